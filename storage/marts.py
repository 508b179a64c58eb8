"""Reads of the warehouse marts that dbt builds (dbt_project/models/marts, schema analytics_marts)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

MARTS_SCHEMA = "analytics_marts"  # dbt's <target schema>_marts (dbt_project/profiles.yml: analytics)


class MartsMissing(LookupError):
    """The marts have not been built yet (the warehouse_build job has not run)."""


def daily_pnl(conn: sa.Connection, as_of: date, accounts: list[str]):
    """(per account/strategy, per account) daily P&L rows up to ``as_of`` as pandas frames, ordered by day."""
    import pandas as pd

    missing = [t for t in ("mart_daily_pnl", "mart_account_daily_pnl")
               if conn.execute(sa.text("select to_regclass(:t)"), {"t": f"{MARTS_SCHEMA}.{t}"}).scalar() is None]
    if missing:
        raise MartsMissing(f"warehouse marts {missing} do not exist: run the warehouse_build job first")
    where = "day <= :as_of" + (" and account = any(:accounts)" if accounts else "")
    params = {"as_of": as_of, "accounts": accounts}
    strategies = pd.read_sql(sa.text(f"select * from {MARTS_SCHEMA}.mart_daily_pnl where {where} "
                                     "order by account, strategy, day"), conn, params=params)
    portfolios = pd.read_sql(sa.text(f"select * from {MARTS_SCHEMA}.mart_account_daily_pnl where {where} "
                                     "order by account, day"), conn, params=params)
    return strategies, portfolios


def symbol_daily_pnl(conn: sa.Connection, as_of: date, accounts: list[str]):
    """Per account/strategy/symbol daily P&L and marks up to ``as_of`` (pandas), for attribution."""
    import pandas as pd

    if conn.execute(sa.text("select to_regclass(:t)"), {"t": f"{MARTS_SCHEMA}.mart_symbol_daily_pnl"}).scalar() is None:
        raise MartsMissing("warehouse mart mart_symbol_daily_pnl does not exist: run the warehouse_build job first")
    where = "day <= :as_of" + (" and account = any(:accounts)" if accounts else "")
    return pd.read_sql(sa.text(f"select account, strategy, symbol, day, pnl, mark_price from {MARTS_SCHEMA}."
                               f"mart_symbol_daily_pnl where {where} order by account, strategy, symbol, day"),
                       conn, params={"as_of": as_of, "accounts": accounts})
