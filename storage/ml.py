"""The ML tables: feature sets, features, labels, the model ledger (ml_models) and its audit rows, and the
reads the monitoring and the shadow comparison make of trades, signals and stream bars.

Features and labels arrive as polars frames and leave as polars frames; the feature names are the
caller's (ml.features.FEATURE_NAMES): storage does not import ml.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Sequence

import polars as pl
import sqlalchemy as sa

from trading.records import Fill, Liquidity, Side

NS = 1_000_000_000


def _ts(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / NS, tz=timezone.utc)


from storage.audit import decision as audit  # noqa: E402,F401 - the ML callers' name


def _json(x: Any) -> str:
    return json.dumps(x, default=str, sort_keys=True)


def _nullable(v: Any) -> Any:
    return None if v is None or v != v else v  # NaN -> JSON null


# -- features and labels ---------------------------------------------------------------------------------

def replace_features(conn: sa.Connection, feature_set: str, version: int | str, names: Sequence[str],
                     params: dict, symbols: Sequence[str], exchange: str, start_ns: int, end_ns: int,
                     features: pl.DataFrame) -> int:
    """Register the feature set (once) and replace its rows of ``exchange`` in [start_ns, end_ns) with
    ``features`` (columns symbol, ts, *names; NaN stored as null), in the caller's transaction."""
    conn.execute(sa.text("""
        INSERT INTO ml_feature_sets (feature_set, version, names, params, symbols)
        VALUES (:fs, :ver, CAST(:n AS jsonb), CAST(:p AS jsonb), CAST(:sy AS jsonb))
        ON CONFLICT (feature_set) DO NOTHING"""),
        {"fs": feature_set, "ver": version, "n": json.dumps(list(names)), "p": json.dumps(params),
         "sy": json.dumps(sorted(symbols))})
    conn.execute(sa.text("DELETE FROM ml_features WHERE feature_set = :fs AND exchange = :e AND ts >= :a AND ts < :b"),
                 {"fs": feature_set, "e": exchange, "a": _ts(start_ns), "b": _ts(end_ns)})
    records = [{"fs": feature_set, "e": exchange, "s": r[0], "ts": _ts(r[1]),
                "v": json.dumps({n: _nullable(v) for n, v in zip(names, r[2:])})}
               for r in features.select("symbol", "ts", *names).iter_rows()]
    if records:
        conn.execute(sa.text("INSERT INTO ml_features (feature_set, exchange, symbol, ts, vals) "
                             "VALUES (:fs, :e, :s, :ts, CAST(:v AS jsonb))"), records)
    return len(records)


def replace_labels(conn: sa.Connection, label_set: str, exchange: str, start_ns: int, end_ns: int,
                   labels: pl.DataFrame) -> int:
    """Replace the label set's rows of ``exchange`` in [start_ns, end_ns) with ``labels`` (columns symbol,
    ts, fwd_ret_1, fwd_ret, tb_label, tb_t1), in the caller's transaction."""
    conn.execute(sa.text("DELETE FROM ml_labels WHERE label_set = :ls AND exchange = :e AND ts >= :a AND ts < :b"),
                 {"ls": label_set, "e": exchange, "a": _ts(start_ns), "b": _ts(end_ns)})
    if labels.height:
        conn.execute(sa.text("""INSERT INTO ml_labels (label_set, exchange, symbol, ts, fwd_ret_1, fwd_ret, tb_label, tb_t1)
                                VALUES (:ls, :e, :s, :ts, :f1, :f, :l, :t1)"""),
                     [{"ls": label_set, "e": exchange, "s": r["symbol"], "ts": _ts(r["ts"]), "f1": r["fwd_ret_1"],
                       "f": r["fwd_ret"], "l": int(r["tb_label"]), "t1": _ts(r["tb_t1"])}
                      for r in labels.iter_rows(named=True)])
    return labels.height


def load_features(conn: sa.Connection, feature_set: str, exchange: str, names: Sequence[str], start_ns: int,
                  end_ns: int) -> pl.DataFrame:
    """Stored features in [start_ns, end_ns): columns symbol, ts, *names (null where not stored)."""
    rows = conn.execute(sa.text("""
        SELECT symbol, (extract(epoch FROM ts) * 1000000)::bigint * 1000, vals FROM ml_features
        WHERE feature_set = :fs AND exchange = :e AND ts >= :a AND ts < :b"""),
        {"fs": feature_set, "e": exchange, "a": _ts(start_ns), "b": _ts(end_ns)}).fetchall()
    return pl.DataFrame(
        {"symbol": [r[0] for r in rows], "ts": [int(r[1]) for r in rows],
         **{n: [r[2].get(n) for r in rows] for n in names}},
        schema={"symbol": pl.Utf8, "ts": pl.Int64, **{n: pl.Float64 for n in names}})


def load_labels(conn: sa.Connection, label_set: str, exchange: str, start_ns: int, end_ns: int) -> pl.DataFrame:
    rows = conn.execute(sa.text("""
        SELECT symbol, (extract(epoch FROM ts) * 1000000)::bigint * 1000, fwd_ret_1, fwd_ret, tb_label,
               (extract(epoch FROM tb_t1) * 1000000)::bigint * 1000
        FROM ml_labels WHERE label_set = :ls AND exchange = :e AND ts >= :a AND ts < :b"""),
        {"ls": label_set, "e": exchange, "a": _ts(start_ns), "b": _ts(end_ns)}).fetchall()
    return pl.DataFrame([tuple(r) for r in rows], orient="row", schema={
        "symbol": pl.Utf8, "ts": pl.Int64, "fwd_ret_1": pl.Float64, "fwd_ret": pl.Float64, "tb_label": pl.Int8,
        "tb_t1": pl.Int64})


def last_feature_ts(conn: sa.Connection, feature_set: str, exchange: str) -> datetime | None:
    return conn.execute(sa.text("SELECT max(ts) FROM ml_features WHERE feature_set = :fs AND exchange = :e"),
                        {"fs": feature_set, "e": exchange}).scalar()


def features_end_ns(conn: sa.Connection, feature_set: str, exchange: str) -> int | None:
    """The end (UTC midnight after) of the last day with stored features: where a retrain's window ends
    by default; None with no features."""
    last = last_feature_ts(conn, feature_set, exchange)
    return None if last is None else (int(last.timestamp()) // 86_400 + 1) * 86_400 * NS


def feature_values(conn: sa.Connection, feature_set: str, exchange: str, *, start_ns: int | None = None,
                   end_ns: int | None = None, recent_hours: float | None = None) -> list[dict]:
    """The stored feature dicts of [start_ns, end_ns), or of the last ``recent_hours`` before the newest row."""
    if recent_hours is not None:
        where = ("ts >= (SELECT max(ts) FROM ml_features WHERE feature_set = :fs AND exchange = :e)"
                 " - make_interval(secs => :h * 3600)")
        params: dict[str, Any] = {"h": float(recent_hours)}
    else:
        where, params = "ts >= :a AND ts < :b", {"a": _ts(start_ns), "b": _ts(end_ns)}
    return list(conn.execute(sa.text(f"SELECT vals FROM ml_features WHERE feature_set = :fs AND exchange = :e AND {where}"),
                             {"fs": feature_set, "e": exchange, **params}).scalars())


def live_feature_values(conn: sa.Connection, account: str, model_name: str, recent_hours: float,
                        version: str | None = None) -> list[dict]:
    """The feature dicts the stream's live signals of ``model_name`` (of ``version`` when given) scored in
    ``account``, over the last ``recent_hours`` before the newest of them (a paused stream is judged on its
    last hours, not on none)."""
    only = "" if version is None else " AND model_version = :v"
    return list(conn.execute(sa.text(f"""
        SELECT features FROM signals
        WHERE account = :a AND model_name = :m AND NOT shadow AND features IS NOT NULL{only}
          AND ts >= (SELECT max(ts) FROM signals WHERE account = :a AND model_name = :m AND NOT shadow
                     AND features IS NOT NULL{only}) - make_interval(secs => :h * 3600)
    """), {"a": account, "m": model_name, "h": float(recent_hours), "v": version}).scalars())


# -- the model ledger ----------------------------------------------------------------------------------

def record_model(conn: sa.Connection, model_name: str, version: str, run_id: str, data_hash: str,
                 status: str, metrics: dict[str, Any]) -> None:
    conn.execute(sa.text("""
        INSERT INTO ml_models (model_name, version, run_id, training_data_hash, status, metrics)
        VALUES (:m, :v, :r, :h, :s, CAST(:metrics AS jsonb))
        ON CONFLICT (model_name, version) DO UPDATE SET run_id = EXCLUDED.run_id,
            training_data_hash = EXCLUDED.training_data_hash, metrics = EXCLUDED.metrics
    """), {"m": model_name, "v": int(version), "r": run_id, "h": data_hash, "s": status, "metrics": _json(metrics)})


def undecided_challengers(conn: sa.Connection, model_name: str, kind: str) -> list[str]:
    """Versions of ``kind`` recorded as challenger that no gate has decided yet (oldest first)."""
    rows = conn.execute(sa.text("""SELECT version FROM ml_models WHERE model_name = :m AND status = 'challenger'
                                   AND metrics->>'kind' = :k ORDER BY version"""), {"m": model_name, "k": kind})
    return [str(v) for (v,) in rows]


def model_metrics(conn: sa.Connection, model_name: str, version: str) -> dict | None:
    """The metrics recorded with a model version, or None when it is not in ml_models."""
    return conn.execute(sa.text("SELECT metrics FROM ml_models WHERE model_name = :m AND version = :v"),
                        {"m": model_name, "v": int(version)}).scalar()


def champion_window(conn: sa.Connection, model_name: str) -> tuple[str, int, int] | None:
    """(version, window_start_ns, holdout_start_ns) of the champion's training data, or None."""
    row = conn.execute(sa.text("""SELECT version, (metrics->>'window_start_ns')::bigint, (metrics->>'holdout_start_ns')::bigint
                                  FROM ml_models WHERE model_name = :m AND status = 'champion'"""),
                       {"m": model_name}).first()
    return None if row is None or row[1] is None else (str(row[0]), int(row[1]), int(row[2]))


def newest_training_end(conn: sa.Connection, model_name: str, exclude_kind: str = "") -> tuple[str, int] | None:
    """(version, window_end_ns) of the newest model trained on stored features (whatever the gate made of
    it; models of ``exclude_kind`` not counted), or None: a retrain asked for before newer data exists
    would train on the same days again."""
    row = conn.execute(sa.text("""SELECT version, (metrics->>'window_end_ns')::bigint FROM ml_models
                                  WHERE model_name = :m AND metrics ? 'window_end_ns'
                                    AND coalesce(metrics->>'kind', '') <> :k
                                  ORDER BY (metrics->>'window_end_ns')::bigint DESC, version DESC LIMIT 1"""),
                       {"m": model_name, "k": exclude_kind}).first()
    return None if row is None else (str(row[0]), int(row[1]))


def reject_model(conn: sa.Connection, model_name: str, version: str, gate: dict | None = None) -> None:
    """Mark a version rejected; with ``gate``, only while it has not been champion, recording the decision."""
    if gate is None:
        conn.execute(sa.text("UPDATE ml_models SET status = 'rejected' WHERE model_name = :m AND version = :v"),
                     {"m": model_name, "v": int(version)})
        return
    conn.execute(sa.text("""UPDATE ml_models SET status = 'rejected', gate = CAST(:g AS jsonb)
                            WHERE model_name = :m AND version = :v AND status IN ('registered', 'challenger', 'rejected')"""),
                 {"g": _json(gate), "m": model_name, "v": int(version)})


def make_champion(conn: sa.Connection, model_name: str, version: str, gate: dict | None = None) -> None:
    """``version`` becomes the champion.  With ``gate`` (a promotion): the previous champion retires, the
    decision is recorded and promoted_at set once; without (a rollback): only the status changes."""
    if gate is None:
        conn.execute(sa.text("UPDATE ml_models SET status = 'champion' WHERE model_name = :m AND version = :v"),
                     {"m": model_name, "v": int(version)})
        return
    conn.execute(sa.text("""UPDATE ml_models SET status = 'retired'
                            WHERE model_name = :m AND status = 'champion' AND version <> :v"""),
                 {"m": model_name, "v": int(version)})
    conn.execute(sa.text("""UPDATE ml_models SET status = 'champion', gate = CAST(:g AS jsonb),
                                promoted_at = coalesce(promoted_at, now())
                            WHERE model_name = :m AND version = :v"""),
                 {"g": _json(gate), "m": model_name, "v": int(version)})


def previous_champion(conn: sa.Connection, model_name: str, current: str) -> str | None:
    """The version promoted before ``current`` (now retired), or None."""
    prev = conn.execute(sa.text("""
        SELECT version FROM ml_models
        WHERE model_name = :m AND status = 'retired' AND promoted_at IS NOT NULL AND version <> :v
          AND promoted_at <= (SELECT promoted_at FROM ml_models WHERE model_name = :m AND version = :v)
        ORDER BY promoted_at DESC, version DESC LIMIT 1
    """), {"m": model_name, "v": int(current)}).scalar()
    return None if prev is None else str(prev)


def model_versions(conn: sa.Connection, model_name: str) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(sa.text("""
        SELECT version, status, run_id, training_data_hash, created_at, promoted_at, gate->>'reason' AS gate_reason
        FROM ml_models WHERE model_name = :m ORDER BY version"""), {"m": model_name})]


# -- what the models did live ------------------------------------------------------------------------------

def strategy_fills(conn: sa.Connection, account: str, strategy: str) -> list[Fill]:
    """The paper/live fills of one strategy of ``account``, in time order."""
    rows = conn.execute(sa.text("""
        SELECT fill_id, client_order_id, account, strategy, exchange, symbol, side, price, quantity, fee,
               fee_currency, liquidity, (extract(epoch FROM ts) * 1000000)::bigint * 1000
        FROM trades WHERE account = :a AND strategy = :s AND mode IN ('paper', 'live')
        ORDER BY ts, fill_id"""), {"a": account, "s": strategy}).fetchall()
    return [Fill(r[0], r[1], r[2], r[3], r[4], r[5], Side(r[6]), Decimal(r[7]), Decimal(r[8]), Decimal(r[9]), r[10],
                 Liquidity(r[11]), int(r[12])) for r in rows]


def model_slots(conn: sa.Connection, account: str, model_name: str) -> list[str]:
    """The stream slots of ``account`` that traded ``model_name``: those whose live (not shadow) signals name it."""
    return list(conn.execute(sa.text(
        "SELECT DISTINCT strategy FROM signals WHERE account = :a AND model_name = :m AND NOT shadow"
        " ORDER BY strategy"), {"a": account, "m": model_name}).scalars())


def slot_signals(conn: sa.Connection, account: str, strategy: str) -> list[tuple]:
    """(ts ns, symbol, target, shadow, model_version) of one stream slot's signals, in time order."""
    return [tuple(r) for r in conn.execute(sa.text(
        "SELECT (extract(epoch FROM ts) * 1e9)::bigint AS ts, symbol, target, shadow, model_version"
        " FROM signals WHERE account = :a AND strategy = :s ORDER BY ts, symbol"),
        {"a": account, "s": strategy})]


def stream_closes(conn: sa.Connection, exchange: str, interval: str, symbols: Sequence[str], first_ns: int,
                  last_ns: int) -> list[tuple]:
    """(symbol, ts ns, close) of the bars the stream stored in market_data, [first_ns, last_ns]."""
    return [tuple(r) for r in conn.execute(sa.text(
        "SELECT symbol, (extract(epoch FROM ts) * 1e9)::bigint AS ts, close FROM market_data"
        " WHERE exchange = :e AND interval = :iv AND symbol = ANY(:syms)"
        " AND ts >= to_timestamp(:t0 / 1e9) AND ts <= to_timestamp(:t1 / 1e9)"),
        {"e": exchange, "iv": interval, "syms": list(symbols), "t0": first_ns, "t1": last_ns})]
