-- Execution algorithm of a child order: the parent id's prefix before ':' (e.g. 'twap:...'), which is
-- how an algorithm names its parents; parent ids without a prefix (hashes) fall back to the strategy.
select
    client_order_id,
    account,
    strategy,
    exchange,
    symbol,
    side,
    order_type,
    quantity,
    price,
    stop_price,
    time_in_force,
    post_only,
    status,
    filled_quantity,
    reason,
    parent_id,
    case
        when parent_id is null then null
        when position(':' in parent_id) > 1 then lower(split_part(parent_id, ':', 1))
        else strategy
    end as algorithm,
    mode,
    created_at,
    updated_at
from {{ source('platform', 'orders') }}
where {{ account_filter('account') }}
