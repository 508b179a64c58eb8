-- Parent orders as the OMS decided them: the router's (twap, vwap, iceberg) and the emergency
-- liquidator's ('liquidation'). created_at is the decision time, arrival_price the last trade price
-- the OMS knew then (the true decision price, not a bar close).
select
    parent_id,
    account,
    strategy,
    exchange,
    symbol,
    side,
    lower(algorithm) as algorithm,
    quantity,
    arrival_price,
    params,
    status,
    filled_quantity,
    reason,
    mode,
    created_at,
    updated_at
from {{ source('platform', 'parent_orders') }}
where {{ account_filter('account') }}
