-- End-of-day exposure per account, strategy and symbol (position x mark), with each account's gross
-- and net exposure that day and the position the platform holds now (positions) next to the derived one.
select
    d.account, d.strategy, d.symbol, d.day,
    d.quantity,
    d.mark_price,
    d.market_value,
    abs(d.market_value) as gross_exposure,
    sum(abs(d.market_value)) over (partition by d.account, d.day) as account_gross_exposure,
    sum(d.market_value) over (partition by d.account, d.day) as account_net_exposure,
    p.quantity as current_position_quantity
from {{ ref('int_daily_positions') }} d
left join {{ ref('stg_positions') }} p using (account, strategy, symbol)
