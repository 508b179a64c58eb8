-- Fills with their signed quantity (+buy, -sell) and cash flow in quote currency
-- (fees are taken to be in the quote currency, as the paper venue charges them).
select
    fill_id,
    client_order_id,
    account,
    strategy,
    exchange,
    symbol,
    side,
    price,
    quantity,
    case side when 'buy' then quantity else -quantity end as signed_quantity,
    price * quantity as notional,
    fee,
    fee_currency,
    liquidity,
    ts,
    (ts at time zone 'UTC')::date as trade_date,
    mode
from {{ source('platform', 'trades') }}
where {{ account_filter('account') }}
