"""Fake exchanges on 127.0.0.1 for tests: the real ccxt clients talk to them instead of the network.

- ``tests.fakes.binance``: FakeBinance (spot REST + WebSocket-API user data), ``binance_client(url, key, secret,
  pro=False)``; ``python -m tests.fakes.binance --port P --state-file F``.
- ``tests.fakes.coinbase``: FakeCoinbase (Advanced Trade REST + "user" channel, ES256 JWT auth),
  ``coinbase_client(...)``, ``make_cloud_key()``; ``python -m tests.fakes.coinbase --port P --state-file F
  --key-file K``.
- ``tests.fakes.core``: the shared matcher/balances/fault script (Exchange), the threaded server (FakeServer: the
  test-side API set_price/trade/place/cancel/set_balance/fault/books/accepted_count/drop_ws), ``spawn(module,
  ...)`` for the subprocess form and ``Control(url)``, the same API over ``POST /_fake/<op>``.

Each module's docstring lists the URL keys its client helper overrides and the faults it can script.
"""
