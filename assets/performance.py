"""strategy_performance as a daily partitioned asset: partition D writes, for every account and strategy that
has traded by the end of D, its record from its first fill to the end of D (trading/performance.py: the one
ledger, the one Sharpe definition), replacing D's rows."""

from datetime import date

import dagster as dg

from assets.partitions import DAILY
from assets.resources import PostgresResource


@dg.asset(partitions_def=DAILY, description="Daily record per account and strategy (paper/live fills): closed round "
                                            "trips, win rate, Sharpe, max drawdown, total return and P&L since the "
                                            "strategy's first fill, marked at the day's close.")
def strategy_performance(context: dg.AssetExecutionContext, db: PostgresResource) -> dg.MaterializeResult:
    from deploy.settings import get_settings
    from storage import performance as store
    from trading.performance import day_of, strategy_days

    day = date.fromisoformat(context.partition_key)
    starting = get_settings().starting_cash
    with db.begin() as conn:
        fills = store.fills_through(conn, day)
        rows = []
        for account, account_fills in sorted(fills.items()):
            marks = store.daily_marks(conn, {(f.exchange, f.symbol) for f in account_fills},
                                      day_of(account_fills[0].ts), day)
            rows += strategy_days(account, account_fills, marks, starting, day, first=day)
        written = store.replace_day(conn, day, rows)
    return dg.MaterializeResult(metadata={
        "rows": written,
        "accounts": len({r.account for r in rows}),
        "strategies": dg.MetadataValue.json(sorted(f"{r.account}/{r.strategy}" for r in rows)),
    })
