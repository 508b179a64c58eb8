"""Market data: the simulated venue, ccxt normalisation, REST backfill, WebSocket feeds, replay, quality.

Pure domain code: nothing here imports ccxt, HTTP clients or storage; clients are injected.
"""

from trading.marketdata.backfill import BackfillError, RetryPolicy, backfill_ohlcv, backfill_trades, is_transient
from trading.marketdata.live import Backoff, LiveFeed, LiveFeedError
from trading.marketdata.normalize import Normalizer
from trading.marketdata.quality import QualityConfig, QualityResult, clean_ohlcv
from trading.marketdata.replay import Replayer
from trading.marketdata.sim import SimConfig, SimVenue, SymbolSpec
from trading.marketdata.source import available_ts
from trading.marketdata.timeframes import interval_ns

__all__ = [
    "Backoff", "BackfillError", "LiveFeed", "LiveFeedError", "Normalizer",
    "QualityConfig", "QualityResult", "Replayer", "RetryPolicy", "SimConfig", "SimVenue", "SymbolSpec",
    "available_ts", "backfill_ohlcv", "backfill_trades", "clean_ohlcv", "interval_ns", "is_transient",
]  # fmt: skip
