-- Performance per account and strategy over its whole daily history (as_of = its last day).
-- No Sharpe here: its one definition is trading/backtest/metrics.py, which the tear sheets apply to
-- mart_daily_pnl. max_drawdown = lowest equity / running peak - 1 (peak starting at the starting
-- equity), total_return = last equity / starting equity - 1, as that module defines them.
-- trade_count and win_rate are over closed round trips (mart_round_trips); win_rate is null before
-- the first closed round trip.
with daily as (
    select *,
           max(equity) over (partition by account, strategy order by day
                             rows between unbounded preceding and current row) as running_peak
    from {{ ref('mart_daily_pnl') }}
),

stats as (
    select
        account, strategy,
        max(day) as as_of,
        min(day) as first_day,
        count(*) as days,
        sum(fill_count) as fill_count,
        sum(fees) as fees,
        sum(pnl) as pnl,
        least(0, min(equity / greatest(running_peak, {{ var('starting_equity') }}::numeric) - 1)) as max_drawdown,
        (array_agg(equity order by day desc))[1] / {{ var('starting_equity') }}::numeric - 1 as total_return
    from daily
    group by account, strategy
),

trips as (
    select account, strategy, count(*) as trade_count, count(*) filter (where is_win) as wins
    from {{ ref('mart_round_trips') }}
    group by account, strategy
)

select
    s.strategy, s.account, s.as_of, s.first_day, s.days,
    coalesce(t.trade_count, 0) as trade_count,
    s.fill_count,
    case when t.trade_count > 0 then t.wins::numeric / t.trade_count end as win_rate,
    s.max_drawdown,
    s.total_return,
    s.pnl,
    s.fees
from stats s
left join trips t using (account, strategy)
