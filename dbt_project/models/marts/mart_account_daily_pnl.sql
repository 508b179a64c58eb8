-- The portfolio of each account: all its strategies summed per day; equity and return on one
-- var('starting_equity') per account (the same convention as mart_daily_pnl).
with by_account as (
    select account, day,
           sum(pnl) as pnl, sum(cumulative_pnl) as cumulative_pnl, sum(fees) as fees,
           sum(gross_exposure) as gross_exposure, sum(net_exposure) as net_exposure,
           sum(traded_notional) as traded_notional, sum(fill_count) as fill_count,
           sum(round_trips_closed) as round_trips_closed, sum(winning_round_trips) as winning_round_trips,
           count(*) as strategies
    from {{ ref('mart_daily_pnl') }}
    group by account, day
)

select
    *,
    {{ var('starting_equity') }}::numeric + cumulative_pnl as equity,
    pnl / nullif({{ var('starting_equity') }}::numeric + cumulative_pnl - pnl, 0) as daily_return
from by_account
