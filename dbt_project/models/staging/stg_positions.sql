select account, strategy, symbol, quantity, avg_price, realized_pnl, fees, updated_at
from {{ source('platform', 'positions') }}
where {{ account_filter('account') }}
