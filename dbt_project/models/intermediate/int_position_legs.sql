-- Paper and live fills (backtest fills never move a real position) as legs of round trips.
-- A round trip runs from a flat position back to flat. A fill that flips the position (long 1, sell 3)
-- is split into a closing leg (|position before|) and an opening leg (the rest), fee pro rata, so every
-- round trip's P&L is exact without cost-basis bookkeeping: it is the sum of its legs' cash flows.
with fills as (
    select
        *,
        sum(signed_quantity) over (
            partition by account, strategy, symbol order by ts, fill_id
            rows between unbounded preceding and current row
        ) as position_after
    from {{ ref('stg_trades') }}
    where mode <> 'backtest'
),

fills_with_before as (
    select *, position_after - signed_quantity as position_before
    from fills
),

legs as (
    -- leg 1: the whole fill, or only the closing part of a flip
    select
        f.*, 1 as leg_no,
        case when sign(f.position_before) * sign(f.position_after) < 0
             then abs(f.position_before) else f.quantity end as leg_quantity,
        case when sign(f.position_before) * sign(f.position_after) < 0
             then 0 else f.position_after end as leg_position_after,
        f.position_before as leg_position_before
    from fills_with_before f
    union all
    -- leg 2: the opening part of a flip
    select
        f.*, 2 as leg_no,
        abs(f.position_after) as leg_quantity,
        f.position_after as leg_position_after,
        0 as leg_position_before
    from fills_with_before f
    where sign(f.position_before) * sign(f.position_after) < 0
),

priced as (
    select
        account, strategy, symbol, exchange, fill_id, client_order_id, ts, trade_date, side, price, leg_no,
        leg_quantity,
        leg_position_before,
        leg_position_after,
        fee * leg_quantity / quantity as leg_fee,
        (case side when 'buy' then -1 else 1 end) * price * leg_quantity
            - fee * leg_quantity / quantity as leg_cash_flow
    from legs
)

select
    *,
    -- a leg starting from flat opens the next round trip of its account/strategy/symbol
    sum(case when leg_position_before = 0 then 1 else 0 end) over (
        partition by account, strategy, symbol order by ts, fill_id, leg_no
        rows between unbounded preceding and current row
    ) as round_trip_no
from priced
