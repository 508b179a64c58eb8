"""Strategy releases in PostgreSQL (storage/releases.py), the `tradeloop strategy` commands, a candidate
release in shadow beside the live one (streaming/trader.py) compared with model shadow mode's paired test
(ml/shadow.py), and the stream following a promotion without a restart (streaming/releases.py)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tests.streaming.conftest import sim_ticks


def _acct(tag: str) -> str:
    return f"rel-{tag}-{uuid.uuid4().hex[:6]}"


def _audit(engine, account: str, strategy: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT action, actor, reason, details FROM audit_log WHERE scope = :s ORDER BY ts, event_id"),
            {"s": f"account:{account}/strategy:{strategy}"})]


def test_release_lifecycle_promote_refuse_rollback_shadow(engine):
    from storage import releases as rel

    a = _acct("life")
    with engine.begin() as conn:
        v1 = rel.seed_release(conn, a, "sma_cross", {"fast": 5, "slow": 20}, actor="stream")
        assert v1 is not None and v1.version == 1 and v1.status == "live"
        assert rel.seed_release(conn, a, "sma_cross", {"fast": 9, "slow": 30}, actor="stream") is None
        c2 = rel.create_release(conn, a, "sma_cross", {"fast": 4, "slow": 12}, {"study": "s1"}, source="tune:s1")
        c3 = rel.create_release(conn, a, "sma_cross", {"fast": 3, "slow": 9}, {"study": "s2"}, source="tune:s2")
        assert (c2.version, c3.version, c2.status) == (2, 3, "candidate")
        rel.refuse(conn, a, "sma_cross", 3, actor="dagster:r", reason="worse out of sample")
        assert rel.promote(conn, a, "sma_cross", 2, actor="dagster:r", reason="better") == (1, 2)
        with pytest.raises(rel.ReleaseError, match=r"v3 was refused by the gate \(worse out of sample\).*--force"):
            rel.promote(conn, a, "sma_cross", 3, actor="cli", reason="try")
        assert rel.promote(conn, a, "sma_cross", 3, actor="cli", reason="operator knows", force=True) == (2, 3)
        # rollback walks back through the promotions, newest first
        assert rel.rollback(conn, a, "sma_cross", actor="cli", reason="bad fills") == (3, 2)
        assert rel.rollback(conn, a, "sma_cross", actor="cli", reason="still bad") == (2, 1)
        with pytest.raises(rel.ReleaseError, match="nothing to roll back to"):
            rel.rollback(conn, a, "sma_cross", actor="cli", reason="again")
        assert {r.version: r.status for r in rel.releases(conn, a, "sma_cross")} == \
            {1: "live", 2: "rolled_back", 3: "rolled_back"}
        assert rel.set_shadow(conn, a, "sma_cross", 2, actor="cli", reason="A/B") is None
        assert rel.running(conn, a)["sma_cross"]["shadow"].version == 2
        with pytest.raises(rel.ReleaseError, match="is the live release"):
            rel.set_shadow(conn, a, "sma_cross", 1, actor="cli", reason="A/B")
        # promoting the shadow makes it live and ends the shadow (the stream would run it twice)
        rel.promote(conn, a, "sma_cross", 2, actor="cli", reason="shadow won")
        assert "shadow" not in rel.running(conn, a)["sma_cross"]
        with pytest.raises(rel.ReleaseError, match=r"has no release v7 \(versions: v1, v2, v3\)"):
            rel.get_release(conn, a, "sma_cross", 7)
        with pytest.raises(rel.ReleaseError, match=r"no releases of strategy 'nope' \(strategies with releases: sma_cross\)"):
            rel.rollback(conn, a, "nope", actor="cli", reason="x")
        # another account's releases are its own
        assert rel.releases(conn, _acct("other")) == []
    actions = [r[0] for r in _audit(engine, a, "sma_cross")]
    assert actions == ["release_seeded", "release_refused", "release_promoted", "release_promoted",
                       "release_rolled_back", "release_rolled_back", "release_shadow", "release_promoted"]
    forced = [r for r in _audit(engine, a, "sma_cross") if r[0] == "release_promoted"][1]
    assert forced[1] == "cli" and forced[3]["forced"] is True and forced[3]["previous"] == 2


def test_strategy_cli_status_promote_rollback_and_clear_errors(engine, pg_url, monkeypatch):
    from click.testing import CliRunner

    from deploy.settings import get_settings
    from orchestration.cli import main
    from storage import releases as rel

    a = _acct("cli")
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("TRADELOOP_ACCOUNT", a)
    monkeypatch.setenv("TRADELOOP_STREAM_STRATEGIES", json.dumps({"fast": ["sma_cross", {"fast": 5, "slow": 20}],
                                                                  "slow": ["breakout", {}]}))
    get_settings.cache_clear()
    try:
        with engine.begin() as conn:
            rel.seed_release(conn, a, "sma_cross", {"fast": 5, "slow": 20}, actor="stream")
            rel.create_release(conn, a, "sma_cross", {"fast": 4, "slow": 12}, {}, source="tune:x")
            rel.save_slot(conn, a, "slow", "mean_reversion", {"window": 30}, actor="ops", reason="calmer", ts_ns=1)
            rel.save_limits(conn, a, {"account": {"max_open_orders": 7}}, actor="ops", reason="x", ts_ns=1)
        run = CliRunner().invoke
        r = run(main, ["strategy", "promote", "sma_cross", "2", "--reason", "tuned"])
        assert r.exit_code == 0 and r.output.strip() == "sma_cross: live release v1 -> v2", r.output
        r = run(main, ["strategy", "status"])
        assert r.exit_code == 0, r.output
        st = json.loads(r.output)
        assert st["slots"]["fast"]["release"] == 2 and st["slots"]["fast"]["params"] == {"fast": 4, "slow": 12}
        assert st["slots"]["slow"] == {"strategy": "mean_reversion", "release": None, "params": {"window": 30},
                                       "source": "operator swap", "shadow": None}
        assert st["limit_overrides"] == {"account": {"max_open_orders": 7}}
        assert [(x["version"], x["status"]) for x in st["releases"]["sma_cross"]] == [(1, "retired"), (2, "live")]
        r = run(main, ["strategy", "rollback", "sma_cross", "--reason", "drawdown"])
        assert r.exit_code == 0 and "v2 -> v1 (rolled back)" in r.output, r.output
        for args, msg in ((["promote", "nope", "1", "--reason", "x"], "no releases of strategy 'nope'"),
                          (["promote", "sma_cross", "9", "--reason", "x"], "has no release v9 (versions: v1, v2)"),
                          (["promote", "sma_cross", "1", "--reason", "x"], "v1 is already the live release"),
                          (["rollback", "breakout", "--reason", "x"], "no releases of strategy 'breakout'"),
                          (["shadow", "sma_cross"], "give a VERSION to start a shadow, or --stop")):
            r = run(main, ["strategy", *args])
            assert r.exit_code != 0 and msg in r.output and "Traceback" not in r.output, (args, r.output)
    finally:
        get_settings.cache_clear()


def _trader(account: str, shadow: bool):
    from streaming.trader import Trader
    from trading.marketdata.sim import SimConfig, SimVenue
    from trading.risk import RiskLimits
    from trading.strategies import create_strategy

    sim = SimVenue(SimConfig(seed=7))
    t = Trader(account, {"t": create_strategy("sma_cross", {"fast": 3, "slow": 8})}, cash=Decimal(100000),
               limits=RiskLimits(), instruments={i.symbol: i for i in sim.instruments()})
    if shadow:
        t.set_shadow("t", "sma_cross", {"fast": 10, "slow": 30}, release=4)
    return t


def test_a_release_in_shadow_is_recorded_never_traded_and_compared_with_the_models_paired_test(engine):
    from ml.shadow import load_and_compare, paired_returns
    from storage.stream import write_batch

    a = _acct("ab")
    ticks = sim_ticks(240)
    plain, ab = _trader(a, False), _trader(a, True)
    for t in ticks:
        plain.on_tick(t)
        ab.on_tick(t)
    p, b = plain.drain(), ab.drain()
    # the shadow changes nothing that trades: same orders and fills, to the id
    assert [o.client_order_id for o in b.orders] == [o.client_order_id for o in p.orders] and b.orders
    assert [f.fill_id for f in b.fills] == [f.fill_id for f in p.fills]
    live = [s for s in b.signals if not s.shadow]
    shadow = [s for s in b.signals if s.shadow]
    assert shadow and all(s.model_version == "r4" and s.strategy == "t" for s in shadow)
    # from the shadow's first decision on a symbol, one pair per bar of it (before: the live decisions only)
    for sym in {s.symbol for s in shadow}:
        first = min(s.ts for s in shadow if s.symbol == sym)
        assert {s.ts for s in live if s.symbol == sym and s.ts >= first} == {s.ts for s in shadow if s.symbol == sym}
    assert [s.signal_id for s in live if s.ts < min(x.ts for x in shadow)] == \
        [s.signal_id for s in p.signals if s.ts < min(x.ts for x in shadow)]
    # the live rows hold the slot's standing target: the same as its decisions' last value
    last = {}
    for s in sorted(p.signals, key=lambda s: s.ts):
        last[s.symbol] = (s.ts, s.target)
    for sym, (ts, target) in last.items():
        standing = [s.target for s in live if s.symbol == sym and s.ts >= ts]
        assert standing and set(standing) == {target}
    by_key = {(s.ts, s.symbol): s.target for s in live}
    assert any(by_key[(s.ts, s.symbol)] != s.target for s in shadow)  # two rules, decisions that differ

    exchange = f"sim-{a}"
    bars = [type(x)(exchange, *[getattr(x, f) for f in ("symbol", "interval", "exchange_ts", "receive_ts", "open",
                                                        "high", "low", "close", "volume")]) for x in b.bars]
    with engine.begin() as conn:
        write_batch(conn, mode="paper", account=a, bars=bars, signals=b.signals)
    out = load_and_compare(engine, a, "t", exchange, min_n=10)
    assert out["challenger_versions"] == ["r4"] and out["champion_versions"] == ["1"]
    # the same numbers straight from the batch, through the same pairing: nothing lost on the way to Postgres
    import pandas as pd

    sig = pd.DataFrame([(s.ts, s.symbol, s.target, s.shadow) for s in b.signals],
                       columns=["ts", "symbol", "target", "shadow"])
    closes = pd.DataFrame([(x.symbol, x.exchange_ts, float(x.close)) for x in b.bars], columns=["symbol", "ts", "close"])
    pairs = paired_returns(sig, closes, 60_000_000_000)
    assert out["n"] == len(pairs) > 100
    assert out["mean_diff"] == pytest.approx(float((pairs["r_challenger"] - pairs["r_champion"]).mean()))
    assert out["verdict"] in ("no significant difference", "challenger better", "champion better")


def test_ml_slot_keeps_its_own_shadow():
    from streaming.ml_strategy import RegistrySignal
    from streaming.trader import Trader
    from trading.risk import RiskLimits

    class NoModel:
        model_name, status = "m", {"reason": "none"}

        def current(self):
            return None

        def refresh(self):
            pass

        maybe_refresh = refresh

        def predict(self, rows):
            return []

    t = Trader("x", {"ml": RegistrySignal(NoModel(), ["BTC/USDT"])}, cash=Decimal(1000), limits=RiskLimits(),
               instruments={})
    with pytest.raises(ValueError, match="records its own shadow"):
        t.set_shadow("ml", "sma_cross", {}, release=2)
    with pytest.raises(ValueError, match="no strategy slot 'zz'"):
        t.set_shadow("zz", "sma_cross", {}, release=2)


class _Store:
    """streaming.store.Store's ``run`` on the test engine (the worker's own store needs nothing else here)."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def run(self, fn):
        with self.engine.begin() as conn:
            return fn(conn)


def test_trader_follows_promotion_and_rollback_without_restart_and_an_operator_swap_wins_until_the_next(engine):
    from storage import releases as rel
    from streaming import releases as follow
    from streaming.state import WorkerState

    a = _acct("follow")
    worker = WorkerState()
    trader = _trader(a, False)
    worker.trader, worker.store = trader, _Store(engine)
    asyncio.run(follow.restore_runtime(worker, worker.store, trader))
    assert trader.slots_view()["t"]["release"] == 1  # seeded from what it runs
    ticks = sim_ticks(60)
    for t in ticks[: len(ticks) // 2]:
        trader.on_tick(t)
    with engine.begin() as conn:
        c = rel.create_release(conn, a, "sma_cross", {"fast": 4, "slow": 12}, {}, source="tune:x")
        rel.promote(conn, a, "sma_cross", c.version, actor="test", reason="better")
    asyncio.run(follow.refresh(worker))
    view = trader.slots_view()["t"]
    assert view["release"] == 2 and view["params"]["fast"] == 4 and view["version"] == "r2"
    for t in ticks[len(ticks) // 2:]:
        trader.on_tick(t)  # keeps trading on the swapped slot
    assert {s.model_version for s in trader.drain().signals} >= {"r2"}
    with engine.begin() as conn:
        rel.set_shadow(conn, a, "sma_cross", 1, actor="test", reason="A/B")
    asyncio.run(follow.refresh(worker))
    assert trader.slots_view()["t"]["shadow"]["release"] == 1
    # an operator's swap is newer than the live release: the poller leaves it
    trader.swap_strategy("t", "sma_cross", {"fast": 6, "slow": 18})
    worker.slot_overrides["t"] = time.time_ns()
    asyncio.run(follow.refresh(worker))
    assert trader.slots_view()["t"]["params"]["fast"] == 6 and trader.slots_view()["t"]["release"] is None
    assert trader.slots_view()["t"]["shadow"]["release"] == 1  # same strategy: the shadow stays beside it
    # ... until a newer decision: the rollback
    with engine.begin() as conn:
        rel.rollback(conn, a, "sma_cross", actor="test", reason="worse")
    asyncio.run(follow.refresh(worker))
    assert trader.slots_view()["t"]["release"] == 1 and trader.slots_view()["t"]["params"]["fast"] == 3
    assert trader.slots_view()["t"]["shadow"] is None  # v1 went live: no longer a shadow
    with engine.connect() as conn:
        applied = conn.execute(sa.text("SELECT action, details FROM audit_log WHERE scope = :s ORDER BY ts"),
                               {"s": f"account:{a}/slot:t"}).fetchall()
    assert [r[0] for r in applied] == ["release_applied", "release_shadow_applied", "release_applied",
                                       "release_shadow_applied"]
