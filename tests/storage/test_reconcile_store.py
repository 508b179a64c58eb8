"""storage.reconcile against the real PostgreSQL: what a run reads, what it records, and that a second run
over the same venue state finds nothing new."""

from __future__ import annotations

import uuid
from decimal import Decimal as D

import sqlalchemy as sa

from storage import reconcile as store
from storage import stream
from trading.oms.reconcile import (
    external_id, fill_id_of, Kind, reconcile, Tolerance, Verdict, VenueOrder, VenueSnapshot, VenueTrade,
)
from trading.records import (
    Fill, Liquidity, NS_PER_S, OrderEvent, OrderRequest, OrderStatus, OrderType, Side,
)

EX = "binance"
T0 = 1_796_000_000 * NS_PER_S  # 2026-11-29
MODE = "live"


def _acct() -> str:
    return f"rc-{uuid.uuid4().hex[:8]}"


def _order(acct: str, cid: str, qty: str = "1", ts: int = T0) -> OrderRequest:
    return OrderRequest(f"{acct}-{cid}", acct, "momo", EX, "BTC/USDT", Side.BUY, OrderType.LIMIT, D(qty), D(100), ts=ts)


def _ack(acct: str, cid: str, vid: str, ts: int = T0) -> OrderEvent:
    return OrderEvent(f"{acct}-{cid}", acct, "momo", "BTC/USDT", OrderStatus.ACKNOWLEDGED, D(0), D(1), ts, None, vid)


def _fill(acct: str, tid: str, cid: str, side: Side, qty: str, price: str, fee: str, cur: str, ts: int) -> Fill:
    return Fill(fill_id_of(EX, f"{acct}-{tid}"), f"{acct}-{cid}", acct, "momo", EX, "BTC/USDT", side, D(price), D(qty),
                D(fee), cur,
                Liquidity.TAKER, ts)


def _vtrade(acct: str, tid: str, vid: str, qty: str, ts: int, cid: str | None = None) -> VenueTrade:
    """Venue trade ids are unique per exchange: per test account here (the tests share one database)."""
    return VenueTrade(f"{acct}-{tid}", cid, f"{acct}-{vid}", "BTC/USDT", Side.BUY, D(100), D(qty), D("0.05"), "USDT",
                      Liquidity.MAKER, ts)


def _setup(engine, acct: str) -> None:
    """Two orders of ours, acknowledged; one fill before the baseline, one after."""
    with engine.begin() as conn:
        stream.write_batch(conn, mode=MODE, account=acct, orders=[_order(acct, "o1"), _order(acct, "o2")],
                           events=[_ack(acct, "o1", f"{acct}-v1"), _ack(acct, "o2", f"{acct}-v2")])
        store.adopt_baseline(conn, acct, {"USDT": D(10000), "BTC": D(2)}, T0 + 10 * NS_PER_S, who="test")
        stream.write_batch(conn, mode=MODE, account=acct, fills=[
            _fill(acct, "old", "o0", Side.SELL, "1", "90", "0", "USDT", T0 + 5 * NS_PER_S),  # in the baseline already
            _fill(acct, "new", "o0", Side.SELL, "0.5", "110", "0.001", "BNB", T0 + 20 * NS_PER_S),
        ])
        # another mode's fill is another ledger
        stream.write_batch(conn, mode="paper", account=acct, fills=[
            _fill(acct, "paper", "p0", Side.BUY, "3", "100", "0", "USDT", T0 + 30 * NS_PER_S)])


def test_read_record_open_orders_fill_ids_and_expected_balances(engine):
    acct = _acct()
    _setup(engine, acct)
    venue = VenueSnapshot(T0 + 600 * NS_PER_S, [], [_vtrade(acct, "new", "v9", "0.5", T0 + 20 * NS_PER_S),
                                                   _vtrade(acct, "t-missed", "v1", "0.2", T0 + 40 * NS_PER_S)], {})
    with engine.connect() as conn:
        ours = store.read_record(conn, acct, mode=MODE, exchange=EX, venue=venue)
    assert set(ours.orders) == {f"{acct}-o1", f"{acct}-o2"}
    o1 = ours.orders[f"{acct}-o1"]
    assert (o1.status, o1.venue_order_id, o1.strategy, o1.external) == (OrderStatus.ACKNOWLEDGED, f"{acct}-v1", "momo",
                                                                        False)
    assert ours.fill_ids == {fill_id_of(EX, f"{acct}-new")}  # the venue trade id is found through the fill id
    # baseline + the one live fill after it: sold 0.5 BTC at 110, fee 0.001 BNB
    assert ours.expected_balances == {"USDT": D(10055), "BTC": D("1.5"), "BNB": D("-0.001")}
    assert abs(ours.baseline_ts - (T0 + 10 * NS_PER_S)) < 1000


def test_a_run_records_missed_fill_external_order_statuses_and_a_second_run_finds_nothing(engine):
    acct = _acct()
    _setup(engine, acct)
    now = T0 + 600 * NS_PER_S
    ext = VenueOrder(None, f"{acct}-v77", "BTC/USDT", Side.SELL, OrderType.LIMIT, D("0.3"), D(150),
                     OrderStatus.ACKNOWLEDGED,
                     D(0), T0 + 50 * NS_PER_S)
    o2 = VenueOrder(f"{acct}-o2", f"{acct}-v2", "BTC/USDT", Side.BUY, OrderType.LIMIT, D(1), D(100),
                    OrderStatus.PARTIALLY_FILLED,
                    D("0.2"), T0 + 40 * NS_PER_S)
    # o1 filled at the venue while nobody looked (its trades carry no client id); o2 partly
    trades = [_vtrade(acct, "a", "v1", "0.6", T0 + 30 * NS_PER_S), _vtrade(acct, "b", "v1", "0.4", T0 + 35 * NS_PER_S),
              _vtrade(acct, "c", "v2", "0.2", T0 + 40 * NS_PER_S)]
    usdt = D(10055) - D(120) - 3 * D("0.05")
    venue = VenueSnapshot(now, [ext, o2], trades, {"USDT": usdt, "BTC": D("2.7"), "BNB": D("-0.001")})
    with engine.connect() as conn:
        rec = reconcile(venue, store.read_record(conn, acct, mode=MODE, exchange=EX, venue=venue), Tolerance())
    assert rec.verdict is Verdict.OK, rec.reason
    assert rec.counts() == {"missed_fill": 3, "external_order": 1, "status_mismatch": 2}
    with engine.begin() as conn:
        run_id = store.write_run(conn, rec, mode=MODE, kind="start", exchange=EX)
        store.write_run(conn, rec, mode=MODE, kind="start", exchange=EX)  # a replay adds nothing
    with engine.connect() as conn:
        def q(sql):  # client ids and venue ids without the test's account prefix
            return [tuple(v.removeprefix(f"{acct}-") if isinstance(v, str) else v for v in r)
                    for r in conn.execute(sa.text(sql), {"a": acct}).fetchall()]
        got = [r for r in q("SELECT fill_id, client_order_id, quantity, mode FROM trades WHERE account=:a"
                            " AND mode='live' AND strategy='momo' ORDER BY ts") if r[1] in ("o1", "o2")]
        assert [(r[1], r[2], r[3]) for r in got] == [("o1", D("0.6"), "live"), ("o1", D("0.4"), "live"),
                                                    ("o2", D("0.2"), "live")]
        assert got[0][0] == fill_id_of(EX, f"{acct}-a")  # the adapters' fill id
        assert q("SELECT client_order_id, status, filled_quantity FROM orders WHERE account=:a AND NOT external"
                 " ORDER BY 1") == [("o1", "filled", D(1)), ("o2", "partially_filled", D("0.2"))]
        assert q("SELECT client_order_id, strategy, status, venue_order_id, mode FROM orders WHERE account=:a"
                 " AND external") == [(external_id(EX, ext), "external", "ack", "v77", "live")]
        journal = q("SELECT client_order_id, status FROM order_events WHERE account=:a AND reason='reconciled'"
                    " ORDER BY event_no")
        assert sorted(journal) == [("o1", "filled"), ("o2", "partially_filled")]  # once: the replay added nothing
        (row,) = q("SELECT run_id, kind, verdict, differences FROM reconciliation_runs WHERE account=:a")
        assert row[:3] == (run_id, "start", "ok") and len(row[3]) == 6
        assert {d["kind"] for d in row[3]} == {"missed_fill", "external_order", "status_mismatch"}
        assert q("SELECT count(*) FROM audit_log WHERE scope='account:' || :a") == [(1,)]  # the test's baseline only

    # the next run over the same venue state: everything is known, balances agree with the fills
    with engine.connect() as conn:
        again = reconcile(venue, store.read_record(conn, acct, mode=MODE, exchange=EX, venue=venue), Tolerance())
    assert again.differences == () and again.verdict is Verdict.OK


def test_a_run_that_is_not_ok_gets_an_audit_row_and_a_first_start_adopts_the_baseline(engine):
    acct = _acct()
    now = T0 + 600 * NS_PER_S
    venue = VenueSnapshot(now, [], [], {"USDT": D(5000)})
    with engine.begin() as conn:
        ours = store.read_record(conn, acct, mode=MODE, exchange=EX, venue=venue)
        assert ours.expected_balances is None and ours.orders == {}
        first = reconcile(venue, ours)
        assert first.verdict is Verdict.OK
        store.write_run(conn, first, mode=MODE, kind="start", exchange=EX, baseline=venue.balances)
    assert store_baseline(engine, acct) == {"USDT": D(5000)}
    drifted = VenueSnapshot(now + 60 * NS_PER_S, [], [], {"USDT": D(4000)})
    with engine.begin() as conn:
        rec = reconcile(drifted, store.read_record(conn, acct, mode=MODE, exchange=EX, venue=drifted))
        assert rec.verdict is Verdict.HALTED and rec.differences[0].kind is Kind.BALANCE_DRIFT
        run_id = store.write_run(conn, rec, mode=MODE, kind="periodic", exchange=EX)
    with engine.connect() as conn:
        (audit,) = conn.execute(sa.text("SELECT actor, action, reason, details FROM audit_log WHERE scope = :s"),
                                {"s": f"account:{acct}"}).fetchall()
        assert audit[:2] == ("reconciler", "reconciliation") and "USDT: venue 4000" in audit[2]
        assert audit[3]["run_id"] == run_id and audit[3]["verdict"] == "halted"
        assert [r["verdict"] for r in store.runs(conn, acct)] == ["halted", "ok"]


def test_start_since_covers_open_orders_fills_and_the_last_run(engine):
    acct = _acct()
    now = T0 + 3600 * NS_PER_S
    with engine.connect() as conn:
        first = store.start_since(conn, acct, mode=MODE, now_ns=now, lookback_ns=86400 * NS_PER_S)
        assert first == now - 86400 * NS_PER_S
    _setup(engine, acct)  # open orders created at T0, the newest live fill at T0 + 20 s
    with engine.connect() as conn:
        since = store.start_since(conn, acct, mode=MODE, now_ns=now, lookback_ns=86400 * NS_PER_S, overlap_ns=0)
    assert abs(since - T0) < 1000


def store_baseline(engine, acct):
    with engine.connect() as conn:
        return store.latest_baseline(conn, acct)[1]


def test_proposed_fixing_trades_are_only_written_in_the_runs_row(engine):
    acct = _acct()
    now = T0 + 600 * NS_PER_S
    with engine.begin() as conn:
        store.adopt_baseline(conn, acct, {"BTC": D(1), "USDT": D(1000)}, T0, who="test")
    venue = VenueSnapshot(now, [], [_vtrade(acct, "x", "v", "0.1", T0 - NS_PER_S)], {"BTC": D(2), "USDT": D(1000)})
    with engine.begin() as conn:
        rec = reconcile(venue, store.read_record(conn, acct, mode=MODE, exchange=EX, venue=venue), fix_with_trades=True)
        assert rec.verdict is Verdict.HALTED and len(rec.proposals) == 1
        store.write_run(conn, rec, mode=MODE, kind="periodic", exchange=EX)
    ((proposals,),) = _q_all(engine, "SELECT proposals FROM reconciliation_runs WHERE account=:a", acct)
    assert proposals == [{"client_order_id": rec.proposals[0].client_order_id, "symbol": "BTC/USDT", "side": "sell",
                          "order_type": "market", "quantity": "1"}]
    assert _q_all(engine, "SELECT count(*) FROM orders WHERE account=:a", acct) == [(0,)]  # nothing placed


def _q_all(engine, sql, acct):
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), {"a": acct}).fetchall()]


def test_an_operator_adopts_a_runs_venue_balances_after_a_deposit(engine, pg_url, monkeypatch):
    from click.testing import CliRunner

    from deploy.settings import get_settings
    from orchestration.cli import main

    acct = _acct()
    now = T0 + 600 * NS_PER_S
    first = VenueSnapshot(now, [], [], {"USDT": D(1000)})
    with engine.begin() as conn:
        rec = reconcile(first, store.read_record(conn, acct, mode=MODE, exchange=EX, venue=first))
        store.write_run(conn, rec, mode=MODE, kind="start", exchange=EX, baseline=first.balances,
                        balances=first.balances)
    deposit = VenueSnapshot(now + NS_PER_S, [], [], {"USDT": D(6000)})
    with engine.begin() as conn:
        rec = reconcile(deposit, store.read_record(conn, acct, mode=MODE, exchange=EX, venue=deposit))
        assert rec.verdict is Verdict.HALTED
        drifted = store.write_run(conn, rec, mode=MODE, kind="periodic", exchange=EX, balances=deposit.balances)
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("TRADELOOP_ACCOUNT", acct)
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(main, ["recon", "baseline", "--reason", "deposit of 5000 USDT", "--who", "ops"])
        assert r.exit_code == 0, r.output
        assert r.output.strip() == f"{acct}: baseline adopted from run {drifted}: USDT 6000"
        r = CliRunner().invoke(main, ["recon", "runs", "--limit", "1"])
        assert r.exit_code == 0 and '"verdict": "halted"' in r.output, r.output
        r = CliRunner().invoke(main, ["recon", "baseline", "--run", "nope", "--reason", "x"])
        assert r.exit_code == 1 and "no venue balances recorded by run 'nope'" in r.output
    finally:
        get_settings.cache_clear()
    with engine.connect() as conn:
        again = reconcile(deposit, store.read_record(conn, acct, mode=MODE, exchange=EX, venue=deposit))
        assert again.verdict is Verdict.OK and again.differences == ()
        (audit,) = conn.execute(sa.text("SELECT actor, reason FROM audit_log WHERE scope=:s AND action="
                                        "'balance_baseline'"), {"s": f"account:{acct}"}).fetchall()
    assert audit[0] == "ops" and audit[1].startswith("deposit of 5000 USDT")
