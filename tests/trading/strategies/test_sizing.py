from decimal import Decimal

import pytest

from trading.records import Instrument
from trading.sizing import (
    FixedFraction,
    FixedQuantity,
    FractionalKelly,
    SizingError,
    VolatilityTarget,
    round_to_lot,
)

INST = Instrument("sim", "BTC/USDT", lot_size=Decimal("0.001"))
P, EQ = Decimal("30000"), Decimal("10000")


def test_round_to_lot_rounds_toward_zero():
    assert round_to_lot(Decimal("1.23456"), Decimal("0.001")) == Decimal("1.234")
    assert round_to_lot(Decimal("-1.23456"), Decimal("0.001")) == Decimal("-1.234")
    assert round_to_lot(Decimal("0.0009"), Decimal("0.001")) == 0
    with pytest.raises(SizingError, match="lot_size must be > 0"):
        round_to_lot(Decimal(1), Decimal(0))


def test_fixed_quantity_and_fraction():
    assert FixedQuantity(Decimal("0.5")).quantity(1, P, EQ, INST) == Decimal("0.5")
    assert FixedQuantity(Decimal("0.5")).quantity(-1, P, EQ, INST) == Decimal("-0.5")
    assert FixedFraction(0.5).quantity(1.0, P, EQ, INST) == Decimal("0.166")  # 5000 / 30000 floored to lots
    assert FixedFraction(1.0).quantity(-0.5, P, EQ, INST) == Decimal("-0.166")
    assert FixedFraction(1.0).quantity(1.0, P, Decimal("-5"), INST) == 0  # no equity, no position
    with pytest.raises(SizingError, match="fraction must be"):
        FixedFraction(float("nan"))
    with pytest.raises(SizingError, match="target must be finite"):
        FixedFraction(1.0).quantity(float("nan"), P, EQ, INST)
    with pytest.raises(SizingError, match="price must be > 0"):
        FixedFraction(1.0).quantity(1.0, Decimal(0), EQ, INST)


def test_volatility_target():
    s = VolatilityTarget(target_vol=0.01, max_leverage=2.0)
    assert s.quantity(1, P, EQ, INST, volatility=0.02) == Decimal("0.166")  # leverage 0.5
    assert s.quantity(1, P, EQ, INST, volatility=0.001) == Decimal("0.666")  # capped at 2x
    for bad_vol in (None, 0.0, float("nan")):
        assert s.quantity(1, P, EQ, INST, volatility=bad_vol) == 0
    with pytest.raises(SizingError, match="target_vol must be > 0"):
        VolatilityTarget(target_vol=0)


def test_fractional_kelly():
    k = FractionalKelly(win_rate=0.6, payoff=1.0, fraction=0.5)
    assert k.kelly == pytest.approx(0.2) and k.leverage == pytest.approx(0.1)
    assert k.quantity(1, P, EQ, INST) == Decimal("0.033")
    assert FractionalKelly(win_rate=0.3, payoff=1.0).quantity(1, P, EQ, INST) == 0  # no edge -> flat, never negative
    est = FractionalKelly.from_trades([10, -5, 10, -5], fraction=1.0)
    assert est.win_rate == 0.5 and est.payoff == 2.0 and est.kelly == pytest.approx(0.25)
    with pytest.raises(SizingError, match="at least one winning and one losing"):
        FractionalKelly.from_trades([1, 2])
    with pytest.raises(SizingError, match="win_rate must be in"):
        FractionalKelly(win_rate=1.5, payoff=1)
