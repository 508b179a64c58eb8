"""storage.target_weights: the weights valid for a trading day are the latest computed strictly before it."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from storage import target_weights as tw


def _write(engine, pf: str, as_of: date, weights: dict[str, float], status: str = "optimal") -> None:
    with engine.begin() as conn:
        tw.replace_weights(conn, pf, as_of, list(weights), list(weights.values()), model="min_variance",
                           estimator="sample", solver="CLARABEL", solver_status=status, expected_return=float("nan"),
                           expected_vol=0.1, solve_time_s=0.01, inputs={"as_of": as_of}, run_id="r1")


def test_weights_for_a_trading_day_are_computed_strictly_before_it(engine):
    pf = f"st-tw-{uuid.uuid4().hex[:6]}"
    _write(engine, pf, date(2026, 11, 20), {"A": 0.5, "B": 0.5})
    _write(engine, pf, date(2026, 11, 22), {"A": 0.2, "B": 0.8}, status="optimal_inaccurate")
    with engine.connect() as conn:
        read = lambda d: tw.weights_for_trading_day(conn, pf, d)  # noqa: E731
        # the 22nd's weights use the 22nd's closes: not tradable on the 22nd itself (no look-ahead)
        assert {r.as_of for r in read(date(2026, 11, 22))} == {date(2026, 11, 20)}
        assert {r.as_of for r in read(date(2026, 11, 21))} == {date(2026, 11, 20)}
        latest = read(date(2026, 11, 23))
        assert [(r.symbol, float(r.weight)) for r in latest] == [("A", 0.2), ("B", 0.8)]
        assert {(r.as_of, r.model, r.solver_status) for r in latest} == {(date(2026, 11, 22), "min_variance",
                                                                         "optimal_inaccurate")}
        assert read(date(2026, 11, 20)) == []  # nothing computed before the first day
        assert tw.weights_for_trading_day(conn, pf + "-none", date(2026, 11, 23)) == []


def test_replace_weights_is_idempotent_and_exact(engine):
    pf = f"st-tw-{uuid.uuid4().hex[:6]}"
    _write(engine, pf, date(2026, 11, 22), {"A": 0.1, "B": 0.7, "C": 0.2})
    _write(engine, pf, date(2026, 11, 22), {"A": 0.3, "B": 0.7})  # a re-run replaces, C goes away
    with engine.connect() as conn:
        assert tw.weights_as_of(conn, pf, date(2026, 11, 22)) == {"A": 0.3, "B": 0.7}
        assert tw.weights_as_of(conn, pf, date(2026, 11, 21)) == {}


def test_replace_weights_in_a_failed_transaction_leaves_the_old_rows(engine):
    pf = f"st-tw-{uuid.uuid4().hex[:6]}"
    _write(engine, pf, date(2026, 11, 22), {"A": 1.0})
    with pytest.raises(RuntimeError), engine.begin() as conn:
        tw.replace_weights(conn, pf, date(2026, 11, 22), ["B"], [1.0], model="m", estimator="e", solver="s",
                           solver_status="optimal", expected_return=0.1, expected_vol=0.1, solve_time_s=0.0,
                           inputs={}, run_id=None)
        raise RuntimeError("the asset failed after writing")
    with engine.connect() as conn:
        assert tw.weights_as_of(conn, pf, date(2026, 11, 22)) == {"A": 1.0}
