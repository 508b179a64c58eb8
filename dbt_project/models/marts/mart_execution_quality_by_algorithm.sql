-- Execution quality per algorithm: arrival-notional-weighted shortfall and cost, quantity-weighted slippage.
select
    algorithm, mode,
    count(*) as parents,
    sum(filled_quantity) as filled_quantity,
    sum(arrival_price * filled_quantity) as arrival_notional,
    sum(shortfall) as shortfall,
    sum(fees) as fees,
    sum(shortfall) / nullif(sum(arrival_price * filled_quantity), 0) * 10000 as shortfall_bps,
    (sum(shortfall) + sum(fees)) / nullif(sum(arrival_price * filled_quantity), 0) * 10000 as cost_bps,
    sum(slippage_bps * filled_quantity) / nullif(sum(filled_quantity), 0) as slippage_bps
from {{ ref('mart_execution_quality') }}
where filled_quantity > 0
group by algorithm, mode
