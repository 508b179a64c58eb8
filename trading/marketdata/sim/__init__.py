"""``sim``: a simulated venue that generates realistic market data with no network (the default source).

Model (one latent step per minute, all symbols at once; docs/SIM_VENUE.md explains it):

* log-volatility: a common AR(1) factor (volatility clustering) shifted up in the *volatile* state of
  a two-state Markov regime chain (calm/volatile);
* returns: Student-t innovations (fat tails) correlated across symbols through the Cholesky factor of
  the configured correlation matrix, plus compound-Poisson market-wide jumps;
* minute high/low: the extremes of a Brownian bridge between open and close (closed form);
* activity (volume and trade count) follows a U-shape over the UTC day, the volatility level and the
  size of the move; trades arrive as a Cox (doubly stochastic Poisson) process with that intensity;
* predictable structure (``structure``: 1 in the platform's market ``anchored_config``, setting
  TRADELOOP_SIM_STRUCTURE; 0, SimConfig's default, is the null market): a persistent order-flow imbalance
  per symbol (AR(1), half-life ``flow_half_life_minutes``, innovations correlated across symbols like
  returns) pushes the *next* minute's return by ``structure * flow_impact`` of that minute's volatility and
  tilts the aggressor side of its trades. Order flow leads returns, and because it persists returns trend
  over the following hours (short-horizon momentum), which a model can learn from the bars' features. Off,
  the path is exactly the one the same seed gives without it (the flow has its own random stream);
* ticks: a path inside each minute that starts at the open, touches the high and the low and ends at
  the close, so bars aggregate exactly the path the ticks follow; quotes and an L2 book sit around the
  trades with a spread that widens and depth that thins when volatility is high.

Everything is a deterministic function of ``SimConfig`` (seed included): the path is anchored at
``origin_ns`` and random numbers are drawn per fixed-size block, so any query of any window returns the
same data, and the first ``n`` records do not depend on how many were asked for.

Modules: ``config`` (SimConfig), ``paths`` (the latent path and its bars), ``events`` (ticks, quotes,
books, the event stream), ``venue`` (SimVenue).
"""

from trading.marketdata.sim.config import (
    DEFAULT_SYMBOLS, SimConfig, SimConfigError, SimRangeError, SymbolSpec, anchored_config,
)
from trading.marketdata.sim.venue import SimVenue

__all__ = ["DEFAULT_SYMBOLS", "SimConfig", "SimConfigError", "SimRangeError", "SimVenue", "SymbolSpec", "anchored_config"]
