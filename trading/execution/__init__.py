"""Execution algorithms: parent orders (TWAP, VWAP, Iceberg) that schedule child orders on a venue."""

from trading.execution.base import Action, CancelRequest, ExecutionError, ParentOrder, Progress, ShortfallReport
from trading.execution.iceberg import Iceberg
from trading.execution.schedule import TWAP, VWAP, ScheduledParent, volume_profile

__all__ = [
    "Action",
    "CancelRequest",
    "ExecutionError",
    "Iceberg",
    "ParentOrder",
    "Progress",
    "ScheduledParent",
    "ShortfallReport",
    "TWAP",
    "VWAP",
    "volume_profile",
]
