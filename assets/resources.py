"""Dagster resources: connections to the platform's PostgreSQL (system of record)."""

from __future__ import annotations

from contextlib import contextmanager

import dagster as dg
import sqlalchemy as sa


class PostgresResource(dg.ConfigurableResource):
    """The system of record. `url` defaults to DATABASE_URL, which `tradeloop up` sets."""

    url: str

    def engine(self) -> sa.Engine:
        from storage import db

        return db.engine(self.url)  # one pool per process: assets run many times under the daemon

    @contextmanager
    def begin(self):
        """A transaction: everything inside commits together or not at all (no half-written state)."""
        with self.engine().begin() as conn:
            yield conn


class MarketDataSource(dg.ConfigurableResource):
    """Where history comes from: the built-in `sim` venue (default, offline) or a ccxt exchange id."""

    kind: str = "sim"
    seed: int = 7
    history_start: str = "2026-11-01"  # the sim's origin: its history starts at the first partition
    structure: float = 1.0  # the sim's predictable structure (TRADELOOP_SIM_STRUCTURE; 0 = null market)
    # set: the clean bars of `kind` are read from this database's market_data_clean instead of the venue
    # (`tradeloop simulate --history stored` replays the platform's own stored history)
    stored_url: str = ""

    def exchange_name(self) -> str:
        return "sim" if self.kind == "sim" else self.kind

    def fetch_bars(self, symbol: str, interval: str, start_ns: int, end_ns: int):
        """Bars in [start_ns, end_ns) as a polars frame with a stable `record_id`, and rejects by reason."""
        from collections import Counter

        if self.stored_url:
            return _stored_bars(self.stored_url, self.exchange_name(), symbol, interval, start_ns, end_ns), Counter()
        if self.kind == "sim":
            return _sim_bars(self.seed, self.history_start, symbol, interval, start_ns, end_ns, self.structure), Counter()
        return _ccxt_bars(self.kind, symbol, interval, start_ns, end_ns)


def _sim_bars(seed: int, history_start: str, symbol: str, interval: str, start_ns: int, end_ns: int,
              structure: float = 1.0):
    from trading.marketdata.sim import SimVenue, anchored_config
    from trading.marketdata.timeframes import interval_ns

    venue = SimVenue(anchored_config(seed, history_start, structure))
    known = [i.symbol for i in venue.instruments()]
    if symbol not in known:
        raise dg.Failure(description=f"the sim venue has no symbol {symbol!r}; it has {known}")
    n = (end_ns - start_ns) // interval_ns(interval)
    return _with_record_ids(venue.generate_bars(start_ns, n, interval, symbols=[symbol]))


def _stored_bars(url: str, exchange: str, symbol: str, interval: str, start_ns: int, end_ns: int):
    """Clean bars another database stored (the platform's, for a simulation over its own history)."""
    from storage import db
    from storage.market_data import load_clean_bars

    engine = db.create_engine(url)
    try:
        with engine.connect() as conn:
            frame = load_clean_bars(conn, exchange=exchange, symbols=[symbol], interval=interval,
                                    start_ns=start_ns, end_ns=end_ns)
    finally:
        engine.dispose()
    return _with_record_ids(frame)


def _with_record_ids(frame):
    """The bars' stable ids (trading.records.Bar.id: the same bar from any source has the same id)."""
    import polars as pl

    from trading.records import stable_id

    ids = [stable_id("bar", e, s, i, t) for e, s, i, t in frame.select("exchange", "symbol", "interval", "ts").iter_rows()]
    return frame.with_columns(pl.Series("record_id", ids, dtype=pl.String))


def _ccxt_bars(exchange_id: str, symbol: str, interval: str, start_ns: int, end_ns: int):
    """REST backfill through ccxt (network: only when a user configures an exchange)."""
    import ccxt
    import polars as pl

    from trading.marketdata.backfill import backfill_ohlcv
    from trading.marketdata.normalize import Normalizer

    if not hasattr(ccxt, exchange_id):
        raise dg.Failure(description=f"unknown market source {exchange_id!r}: use 'sim' or a ccxt exchange id")
    exchange = getattr(ccxt, exchange_id)({"enableRateLimit": True})
    normalizer = Normalizer(exchange_id)
    bars = [bar for page in backfill_ohlcv(exchange, symbol, interval, since_ns=start_ns, until_ns=end_ns,
                                           normalizer=normalizer) for bar in page]
    counts = {f"{kind}:{reason}": n for (kind, reason), n in normalizer.rejected.items()}
    frame = pl.DataFrame(
        [{"exchange": b.exchange, "symbol": b.symbol, "interval": b.interval, "ts": b.exchange_ts,
          "open": float(b.open), "high": float(b.high), "low": float(b.low), "close": float(b.close),
          "volume": float(b.volume), "record_id": b.id} for b in bars],
        schema={"exchange": pl.String, "symbol": pl.String, "interval": pl.String, "ts": pl.Int64,
                "open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64,
                "volume": pl.Float64, "record_id": pl.String},
    )
    return frame, counts
