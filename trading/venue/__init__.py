"""Paper trading venue: a price-time priority matching engine, cost models and the simulated exchange."""

from trading.venue.bar_fills import BarFillVenue
from trading.venue.book import OrderBook
from trading.venue.book_fills import BookFillVenue
from trading.venue.costs import CostModelError, FeeSchedule, ImpactModel, LatencyModel
from trading.venue.paper import (
    InvalidMarketDataError,
    InvalidReplaceError,
    OrderClosedError,
    PaperVenue,
    UnknownOrderError,
    VenueConfigError,
    VenueError,
)

__all__ = [
    "BarFillVenue",
    "BookFillVenue",
    "CostModelError",
    "FeeSchedule",
    "ImpactModel",
    "InvalidMarketDataError",
    "InvalidReplaceError",
    "LatencyModel",
    "OrderBook",
    "OrderClosedError",
    "PaperVenue",
    "UnknownOrderError",
    "VenueConfigError",
    "VenueError",
]
