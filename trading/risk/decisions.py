"""What the risk engine answers: a pre-trade decision, a flatten request, a VaR report."""

from __future__ import annotations

from dataclasses import dataclass

from trading.records import OrderRequest, stable_id
from trading.risk.var import VarResult


@dataclass(frozen=True, slots=True)


class RiskDecision:
    approved: bool
    reason: str | None = None  # snake_case code of the first failed check
    detail: str = ""


APPROVED = RiskDecision(True)


@dataclass(frozen=True, slots=True)


class FlattenRequest:
    """What the caller must do to get flat: cancel these open orders, send these child orders."""

    scope: str
    reason: str
    ts: int
    cancel_order_ids: tuple[str, ...]
    orders: tuple[OrderRequest, ...]

    @property
    def id(self) -> str:
        return stable_id("flatten", self.scope, self.reason, self.ts)


@dataclass(frozen=True, slots=True)


class VarReport:
    account: VarResult
    strategies: dict[str, VarResult]


def reject(reason: str, detail: str = "") -> RiskDecision:
    return RiskDecision(False, reason, detail)
