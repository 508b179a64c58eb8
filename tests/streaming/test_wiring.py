"""streaming.wiring: the worker's Trader from the settings, in process."""

from __future__ import annotations

import pytest

from deploy.settings import Settings


def test_the_trader_trades_the_symbols_of_the_settings():
    from streaming.wiring import build_trader

    trader = build_trader(Settings(_env_file=None, symbols=["SOL/USDT", "BTC/USDT"],
                                   stream_strategies={"t": ("sma_cross", {"fast": 3, "slow": 8})}))
    assert list(trader.instruments) == ["SOL/USDT", "BTC/USDT"]
    assert {i.exchange for i in trader.instruments.values()} == {"sim"}


def test_a_symbol_the_venue_does_not_list_is_one_line_naming_the_setting():
    from streaming.wiring import WiringError, build_trader

    with pytest.raises(WiringError) as err:
        build_trader(Settings(_env_file=None, symbols=["BTC/USDT", "DOGE/USDT"]))
    message = str(err.value)
    assert message.startswith("TRADELOOP_SYMBOLS:") and "DOGE/USDT" in message and "\n" not in message
