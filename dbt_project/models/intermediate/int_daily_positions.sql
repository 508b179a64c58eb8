-- One row per account/strategy/symbol and UTC day, from the day of its first paper/live fill to the
-- later of its last fill and the last mark of its symbol: end-of-day position, cash flow and mark.
-- Mark = close of the last clean bar that ended by the end of the day (carried forward over days
-- without bars); a symbol without any bar so far is marked at its last fill price.
with fills as (
    select * from {{ ref('stg_trades') }} where mode <> 'backtest'
),

keys as (
    select account, strategy, symbol, min(trade_date) as first_date, max(trade_date) as last_fill_date
    from fills
    group by account, strategy, symbol
),

last_bar_date as (
    select symbol, max(bar_date) as last_bar_date from {{ ref('stg_market_data_clean') }} group by symbol
),

spine as (
    select k.account, k.strategy, k.symbol, d::date as day
    from keys k
    left join last_bar_date b on b.symbol = k.symbol
    cross join lateral generate_series(
        k.first_date, greatest(k.last_fill_date, coalesce(b.last_bar_date, k.last_fill_date)), interval '1 day'
    ) as d
),

-- The mark of each symbol and day on which a bar ended: the close of the last bar ended by the day's end
-- (a bar ending at midnight marks the day before). Computed once per symbol and day, not per position-day:
-- a correlated lookup over all bars made the build grow with rows x bars (16 min for a 90-day simulation).
daily_marks as materialized (
    select distinct on (symbol, mark_day) symbol, mark_day, close
    from (
        select symbol, exchange, bar_end, close,
               ((bar_end - interval '1 microsecond') at time zone 'UTC')::date as mark_day
        from {{ ref('stg_market_data_clean') }}
    ) b
    order by symbol, mark_day, bar_end desc, exchange
),

daily_fills as (
    select account, strategy, symbol, trade_date as day,
           sum(signed_quantity) as quantity_change,
           sum(-signed_quantity * price - fee) as cash_flow,
           sum(fee) as fees,
           sum(notional) as traded_notional,
           count(*) as fill_count
    from fills
    group by account, strategy, symbol, trade_date
),

accumulated as (
    select
        s.account, s.strategy, s.symbol, s.day,
        coalesce(f.cash_flow, 0) as cash_flow,
        coalesce(f.fees, 0) as fees,
        coalesce(f.traded_notional, 0) as traded_notional,
        coalesce(f.fill_count, 0) as fill_count,
        sum(coalesce(f.quantity_change, 0)) over w as quantity,
        sum(coalesce(f.cash_flow, 0)) over w as cumulative_cash_flow
    from spine s
    left join daily_fills f using (account, strategy, symbol, day)
    window w as (partition by s.account, s.strategy, s.symbol order by s.day rows between unbounded preceding and current row)
)

select
    a.*,
    m.mark_price,
    a.quantity * m.mark_price as market_value,
    a.cumulative_cash_flow + a.quantity * m.mark_price as cumulative_pnl
from accumulated a
cross join lateral (
    select coalesce(
        (select dm.close from daily_marks dm
          where dm.symbol = a.symbol and dm.mark_day <= a.day
          order by dm.mark_day desc limit 1),
        (select t.price from fills t
          where t.account = a.account and t.strategy = a.strategy and t.symbol = a.symbol
            and t.trade_date <= a.day
          order by t.ts desc, t.fill_id desc limit 1)
    ) as mark_price
) m
