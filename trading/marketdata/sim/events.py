"""Microstructure events: trades inside each minute, the quotes and L2 books around them, and the merged
event stream (``events``, ``stream``).  Part of SimVenue."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from trading.marketdata.sim.config import TICK_BLOCK_MINUTES, SimRangeError
from trading.marketdata.timeframes import NS_PER_MINUTE, interval_ns
from trading.records import AggressorSide, Bar, BookLevel, BookSnapshot, Quote, Tick


@dataclass(slots=True)
class TickBlock:
    """Trades and the quote after each trade, for one symbol and one block of minutes."""

    ts: np.ndarray
    price: np.ndarray  # ticks
    lots: np.ndarray
    side: np.ndarray  # +1 buyer-initiated, -1 seller-initiated
    seq: np.ndarray  # trade number within its minute
    minute: np.ndarray  # global minute index
    bid: np.ndarray
    ask: np.ndarray
    bid_lots: np.ndarray
    ask_lots: np.ndarray
    vol_mult: np.ndarray


class MarketEvents:
    """Ticks, quotes, books and the event stream (state lives on SimVenue)."""

    def _blocks_between(self, start_ns: int, end_ns: int) -> range:
        m0 = self._minute_index(start_ns, "start_ns")
        m1 = -(-(end_ns - self.config.origin_ns) // NS_PER_MINUTE)
        return range(m0 // TICK_BLOCK_MINUTES, -(-m1 // TICK_BLOCK_MINUTES))

    def _tick_block(self, b: int, k: int) -> TickBlock:
        key = (b, k)
        if key in self._blocks:
            return self._blocks[key]
        cfg, spec, bm = self.config, self._specs[k], TICK_BLOCK_MINUTES
        m0 = b * bm
        d = self._minutes(m0, m0 + bm)
        rng = np.random.default_rng([cfg.seed, b, 1, k])
        n = d.trades[:, k]
        o, h, lo, c = d.open[:, k], d.high[:, k], d.low[:, k], d.close[:, k]
        total = int(n.sum())
        bar = np.repeat(np.arange(bm), n)
        first = np.cumsum(n) - n
        j = np.arange(total) - first[bar]
        # uniform order statistics within each minute = Poisson arrivals given their count
        frac = np.sort(bar + rng.random(total)) - bar
        ts = cfg.origin_ns + (m0 + bar) * NS_PER_MINUTE + np.minimum((frac * NS_PER_MINUTE).astype(np.int64), NS_PER_MINUTE - 1)
        # the path passes through open (first trade), high, low (two distinct inner trades) and close (last)
        p_high = 1 + (rng.random(bm) * (n - 2)).astype(np.int64)
        p_low = 1 + (rng.random(bm) * (n - 3)).astype(np.int64)
        p_low += p_low >= p_high
        high_first = p_high < p_low
        pa, pb = np.minimum(p_high, p_low), np.maximum(p_high, p_low)
        va, vb = np.where(high_first, h, lo), np.where(high_first, lo, h)
        seg1, seg2 = j <= pa[bar], j <= pb[bar]
        left = np.where(seg1, 0, np.where(seg2, pa[bar], pb[bar]))
        right = np.where(seg1, pa[bar], np.where(seg2, pb[bar], n[bar] - 1))
        lv = np.where(seg1, o[bar], np.where(seg2, va[bar], vb[bar])).astype(float)
        rv = np.where(seg1, va[bar], np.where(seg2, vb[bar], c[bar])).astype(float)
        w = (j - left) / (right - left)
        sd = d.sigma[bar, k] * c[bar] * np.sqrt(w * (1 - w) * (right - left) / (n[bar] - 1))
        price = np.clip(np.rint(lv + w * (rv - lv) + rng.standard_normal(total) * sd), lo[bar], h[bar]).astype(np.int64)
        # sizes: one lot each plus the rest of the minute's volume split by lognormal weights (sums exactly)
        weights = rng.lognormal(0.0, cfg.trade_size_dispersion, total)
        extra = (d.volume[:, k] - n)[bar]
        alloc = np.floor(extra * weights / np.add.reduceat(weights, first)[bar]).astype(np.int64)
        rem = d.volume[:, k] - n - np.add.reduceat(alloc, first)
        lots = 1 + alloc + (j < rem[bar])
        # aggressor by the tick rule (up-tick = buyer lifted the offer)
        step = np.diff(price, prepend=price[0])
        # unchanged prices are a coin flip; leaning with the minute's order-flow imbalance when the market has structure
        p_buy = 0.5 + 0.5 * np.tanh(cfg.structure * d.flow[bar, k]) if cfg.structure > 0 else 0.5
        side = np.where(step > 0, 1, np.where(step < 0, -1, np.where(rng.random(total) < p_buy, 1, -1))).astype(np.int8)
        vm = d.vol_mult[bar]
        spread = np.maximum(1, np.rint(spec.spread_bps * 1e-4 * price * vm**cfg.spread_vol_elasticity)).astype(np.int64)
        bid = np.maximum(np.where(side > 0, price - spread, price), 1)
        ask = np.maximum(np.where(side > 0, price, price + spread), bid + 1)
        depth = spec.depth_per_level / float(spec.lot_size) * vm ** -cfg.depth_vol_elasticity
        bid_lots = np.maximum(1, np.rint(depth * rng.lognormal(-0.125, 0.5, total))).astype(np.int64)
        ask_lots = np.maximum(1, np.rint(depth * rng.lognormal(-0.125, 0.5, total))).astype(np.int64)
        blk = TickBlock(ts, price, lots, side, j, m0 + bar, bid, ask, bid_lots, ask_lots, vm)
        self._blocks[key] = blk
        while len(self._blocks) > 4 * len(self._specs):
            self._blocks.popitem(last=False)
        return blk

    def ticks(self, start_ns: int, end_ns: int) -> Iterator[Tick]:
        """Trades of all symbols with exchange_ts in [start_ns, end_ns), in time order."""
        return self.events(start_ns, end_ns, kinds=("tick",))  # type: ignore[return-value]

    def quotes(self, start_ns: int, end_ns: int) -> Iterator[Quote]:
        """Best bid/offer after each trade, in time order."""
        return self.events(start_ns, end_ns, kinds=("quote",))  # type: ignore[return-value]

    def books(self, start_ns: int, end_ns: int, every: str = "1s") -> Iterator[BookSnapshot]:
        """L2 snapshots of every symbol at multiples of ``every`` in [start_ns, end_ns)."""
        return self.events(start_ns, end_ns, kinds=("book",), book_every=every)  # type: ignore[return-value]

    def events(
        self,
        start_ns: int,
        end_ns: int | None = None,
        *,
        kinds: Sequence[str] = ("tick", "quote"),
        book_every: str = "1s",
        bar_interval: str = "1m",
    ) -> Iterator[Tick | Quote | BookSnapshot | Bar]:
        """Records of the requested kinds ("tick", "quote", "book", "bar") ordered by availability time.

        A bar becomes available when it closes (open + interval), so consumers never see it early;
        ``end_ns=None`` generates forever (for the real-time stream).
        """
        unknown = set(kinds) - {"tick", "quote", "book", "bar"}
        if unknown:
            raise SimRangeError(f"kinds {sorted(unknown)} unknown; use tick, quote, book, bar")
        self._minute_index(start_ns, "start_ns")
        if end_ns is not None and end_ns < start_ns:
            raise SimRangeError(f"end_ns={end_ns} is before start_ns={start_ns}")
        book_ns = interval_ns(book_every)
        bar_ns = interval_ns(bar_interval)
        if "bar" in kinds and bar_ns % NS_PER_MINUTE:
            raise SimRangeError(f"bar_interval={bar_interval!r}: streamed bars must be whole minutes")
        block_ns = TICK_BLOCK_MINUTES * NS_PER_MINUTE
        b = (start_ns - self.config.origin_ns) // block_ns
        while True:
            b0 = self.config.origin_ns + b * block_ns
            lo, hi = max(b0, start_ns), b0 + block_ns if end_ns is None else min(b0 + block_ns, end_ns)
            if hi <= lo:
                return
            yield from self._block_events(b, lo, hi, kinds, book_ns, bar_interval, bar_ns)
            b += 1

    def _block_events(self, b: int, lo: int, hi: int, kinds: Sequence[str], book_ns: int, bar_interval: str, bar_ns: int) -> Iterator:
        # rows of (available_ts, kind rank, symbol, index); bars close before same-time trades
        keys: list[np.ndarray] = []
        blocks = [self._tick_block(b, k) for k in range(len(self._specs))]
        bar_data = None
        for k, blk in enumerate(blocks):
            sel = np.nonzero((blk.ts >= lo) & (blk.ts < hi))[0]
            for rank, kind in ((1, "tick"), (2, "quote")):
                if kind in kinds:
                    keys.append(np.stack([blk.ts[sel], np.full(sel.size, rank), np.full(sel.size, k), sel]))
        if "book" in kinds:
            snaps = np.arange(-(-lo // book_ns) * book_ns, hi, book_ns, dtype=np.int64)
            for k in range(len(blocks)):
                keys.append(np.stack([snaps, np.full(snaps.size, 3), np.full(snaps.size, k), np.arange(snaps.size)]))
        if "bar" in kinds:
            first_open = max(-(-(lo - bar_ns) // bar_ns) * bar_ns, -(-self.config.origin_ns // bar_ns) * bar_ns)
            n_bars = max(0, -(-(hi - bar_ns - first_open) // bar_ns))
            bar_ts, bar_data = self._bar_arrays(first_open, n_bars, bar_interval)
            for k in range(len(blocks)):
                keys.append(np.stack([bar_ts + bar_ns, np.zeros(n_bars, dtype=np.int64), np.full(n_bars, k), np.arange(n_bars)]))
        if not keys:
            return
        allk = np.concatenate(keys, axis=1)
        order = np.lexsort((allk[3], allk[2], allk[1], allk[0]))
        exch, syms = self.config.exchange, self.symbols
        for ts, rank, k, i in allk[:, order].T.tolist():
            blk = blocks[k]
            t, lot = self._tick_dec[k], self._lot_dec[k]
            if rank == 1:
                yield Tick(
                    exch, syms[k], ts, ts, Decimal(int(blk.price[i])) * t, Decimal(int(blk.lots[i])) * lot,
                    AggressorSide.BUY if blk.side[i] > 0 else AggressorSide.SELL, f"{int(blk.minute[i])}-{int(blk.seq[i])}",
                )  # fmt: skip
            elif rank == 2:
                yield Quote(
                    exch, syms[k], ts, ts, Decimal(int(blk.bid[i])) * t, Decimal(int(blk.bid_lots[i])) * lot,
                    Decimal(int(blk.ask[i])) * t, Decimal(int(blk.ask_lots[i])) * lot,
                )  # fmt: skip
            elif rank == 3:
                yield self._book(k, blk, ts, book_ns)
            else:
                yield self._bar_record(k, bar_interval, ts - bar_ns, bar_data, i)  # type: ignore[arg-type]

    def _book(self, k: int, blk: TickBlock, ts: int, every_ns: int) -> BookSnapshot:
        cfg = self.config
        i = max(int(np.searchsorted(blk.ts, ts, side="right")) - 1, 0)  # the book as left by the last trade
        seq = (ts - cfg.origin_ns) // every_ns
        rng = np.random.default_rng([cfg.seed, seq, 2, k])
        levels = np.arange(cfg.book_levels)
        growth = 1.0 + cfg.depth_level_growth * levels
        base = self._specs[k].depth_per_level / float(self._specs[k].lot_size) * float(blk.vol_mult[i]) ** -cfg.depth_vol_elasticity
        sizes = np.maximum(1, np.rint(base * growth * rng.lognormal(-0.125, 0.5, (2, cfg.book_levels)))).astype(np.int64)
        sizes[0, 0], sizes[1, 0] = blk.bid_lots[i], blk.ask_lots[i]
        bid_px = int(blk.bid[i]) - levels * cfg.level_spacing_ticks
        ask_px = int(blk.ask[i]) + levels * cfg.level_spacing_ticks
        t, lot = self._tick_dec[k], self._lot_dec[k]
        bids = tuple(BookLevel(Decimal(int(p)) * t, Decimal(int(q)) * lot) for p, q in zip(bid_px, sizes[0]) if p > 0)
        asks = tuple(BookLevel(Decimal(int(p)) * t, Decimal(int(q)) * lot) for p, q in zip(ask_px, sizes[1]))
        return BookSnapshot(cfg.exchange, self.symbols[k], ts, ts, bids, asks, int(seq))

    async def stream(
        self,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        speed: float | None = 1.0,
        kinds: Sequence[str] = ("tick", "quote"),
        book_every: str = "1s",
        bar_interval: str = "1m",
        now_ns: Callable[[], int] = time.time_ns,
        clock: Callable[[], int] = time.monotonic_ns,
        sleep: Callable[[float], object] | None = None,
    ) -> AsyncIterator[Tick | Quote | BookSnapshot | Bar]:
        """Records from ``start_ns`` (default: now) paced to ``clock`` at ``speed`` (1.0 = real time).

        ``clock`` (ns) and ``sleep`` (async, seconds) are injectable so tests do not wait.
        """
        from trading.marketdata.replay import Replayer  # replay imports nothing from sim; avoids a cycle

        start = now_ns() if start_ns is None else start_ns
        records = self.events(start, end_ns, kinds=kinds, book_every=book_every, bar_interval=bar_interval)
        replayer = Replayer(records, speed, clock=clock, async_sleep=sleep)
        async for rec in replayer.stream():
            yield rec
