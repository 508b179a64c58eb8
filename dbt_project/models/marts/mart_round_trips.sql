-- Closed round trips (flat -> position -> flat) per account/strategy/symbol: the unit of trade
-- counts and win rates. Open round trips are not trades yet and are left out.
with trips as (
    select
        account, strategy, symbol, round_trip_no,
        min(ts) as opened_at,
        max(ts) as closed_at,
        case when (array_agg(leg_position_after order by ts, fill_id, leg_no))[1] > 0 then 'long' else 'short' end as direction,
        max(abs(leg_position_after)) as max_quantity,
        sum(leg_fee) as fees,
        sum(leg_cash_flow) as pnl,
        count(*) as legs,
        bool_or(leg_position_after = 0) as is_closed
    from {{ ref('int_position_legs') }}
    group by account, strategy, symbol, round_trip_no
)

select
    account, strategy, symbol, round_trip_no, direction, opened_at, closed_at,
    (closed_at at time zone 'UTC')::date as closed_date,
    max_quantity, fees, pnl, pnl > 0 as is_win, legs
from trips
where is_closed
