"""SimVenue: the simulated venue, a deterministic function of its SimConfig (see the package docstring)."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from trading.marketdata.sim.config import MINUTES_PER_YEAR, SimConfig
from trading.marketdata.sim.events import MarketEvents, TickBlock
from trading.marketdata.sim.paths import LatentState, Minutes, PricePaths
from trading.records import Instrument


class SimVenue(PricePaths, MarketEvents):
    """The simulated venue. Batch methods are as fast as possible; ``stream`` paces records to a clock."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = cfg = config or SimConfig()
        self._specs = cfg.symbols
        self.symbols: tuple[str, ...] = tuple(s.symbol for s in cfg.symbols)
        self._chol = np.linalg.cholesky(cfg.correlation_matrix())
        self._tick = np.array([float(s.tick_size) for s in cfg.symbols])
        self._lot = np.array([float(s.lot_size) for s in cfg.symbols])
        self._tick_dec = [s.tick_size for s in cfg.symbols]
        self._lot_dec = [s.lot_size for s in cfg.symbols]
        self._sigma_min = np.array([s.annual_vol for s in cfg.symbols]) / math.sqrt(MINUTES_PER_YEAR)
        self._drift_min = np.array([s.annual_drift for s in cfg.symbols]) / MINUTES_PER_YEAR
        p0 = np.array([s.initial_price for s in cfg.symbols])
        close0 = np.maximum(np.rint(p0 / self._tick), 1).astype(np.int64)
        self._states: list[LatentState] = [LatentState(0.0, 0, np.log(close0 * self._tick), close0, np.zeros(len(cfg.symbols)))]  # no flow at the origin
        self._chunks: OrderedDict[int, Minutes] = OrderedDict()
        self._blocks: OrderedDict[tuple[int, int], TickBlock] = OrderedDict()

    def instruments(self) -> tuple[Instrument, ...]:
        return tuple(Instrument(self.config.exchange, s.symbol, s.tick_size, s.lot_size) for s in self._specs)
