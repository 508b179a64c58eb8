-- Consistency of two independent P&L paths: per account/strategy, the cumulative mark-to-market P&L on
-- the last day equals closed round-trip P&L plus the open round trip's cash flow plus the open
-- position's market value. Every row returned is a mismatch (beyond rounding of numeric division).
{{ config(meta={'dagster': {'ref': {'name': 'mart_daily_pnl'}}}) }}
with last_day as (
    select account, strategy, symbol, cumulative_cash_flow, market_value
    from {{ ref('int_daily_positions') }} d
    where day = (select max(day) from {{ ref('int_daily_positions') }} x
                 where x.account = d.account and x.strategy = d.strategy and x.symbol = d.symbol)
),

open_legs as (
    select l.account, l.strategy, l.symbol, sum(l.leg_cash_flow) as open_cash_flow
    from {{ ref('int_position_legs') }} l
    left join {{ ref('mart_round_trips') }} r using (account, strategy, symbol, round_trip_no)
    where r.round_trip_no is null
    group by l.account, l.strategy, l.symbol
),

closed as (
    select account, strategy, symbol, sum(pnl) as closed_pnl
    from {{ ref('mart_round_trips') }}
    group by account, strategy, symbol
)

select d.account, d.strategy, d.symbol,
       d.cumulative_cash_flow + d.market_value as mtm_pnl,
       coalesce(c.closed_pnl, 0) + coalesce(o.open_cash_flow, 0) + d.market_value as trip_pnl
from last_day d
left join closed c using (account, strategy, symbol)
left join open_legs o using (account, strategy, symbol)
where abs((d.cumulative_cash_flow + d.market_value)
          - (coalesce(c.closed_pnl, 0) + coalesce(o.open_cash_flow, 0) + d.market_value)) > 1e-9
