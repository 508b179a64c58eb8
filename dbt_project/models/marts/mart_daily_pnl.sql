-- Daily mark-to-market P&L and return per account and strategy (paper and live fills).
-- pnl = change of (cumulative cash flow + position x mark) over the day, fees included.
-- Equity = var('starting_equity') + cumulative P&L; daily_return = pnl / previous day's equity
-- (the first day against the starting equity), as trading/backtest/metrics.py defines bar returns.
with by_strategy as (
    select account, strategy, day,
           sum(cumulative_pnl) as cumulative_pnl,
           sum(cash_flow) as cash_flow,
           sum(fees) as fees,
           sum(traded_notional) as traded_notional,
           sum(fill_count) as fill_count,
           sum(abs(market_value)) as gross_exposure,
           sum(market_value) as net_exposure
    from {{ ref('int_daily_positions') }}
    group by account, strategy, day
),

closed as (
    select account, strategy, closed_date as day, count(*) as round_trips_closed,
           count(*) filter (where pnl > 0) as winning_round_trips
    from {{ ref('mart_round_trips') }}
    group by account, strategy, closed_date
),

with_pnl as (
    select b.*,
           b.cumulative_pnl - coalesce(lag(b.cumulative_pnl) over w, 0) as pnl,
           {{ var('starting_equity') }}::numeric + b.cumulative_pnl as equity,
           {{ var('starting_equity') }}::numeric + coalesce(lag(b.cumulative_pnl) over w, 0) as previous_equity
    from by_strategy b
    window w as (partition by b.account, b.strategy order by b.day)
)

select
    p.account, p.strategy, p.day,
    p.pnl,
    p.cumulative_pnl,
    p.fees,
    p.equity,
    case when p.previous_equity > 0 then p.pnl / p.previous_equity end as daily_return,
    p.gross_exposure,
    p.net_exposure,
    p.traded_notional,
    p.fill_count,
    coalesce(c.round_trips_closed, 0) as round_trips_closed,
    coalesce(c.winning_round_trips, 0) as winning_round_trips
from with_pnl p
left join closed c using (account, strategy, day)
