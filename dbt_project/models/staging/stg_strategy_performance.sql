select strategy, account, as_of, trade_count, win_rate, sharpe, max_drawdown, total_return, pnl, updated_at
from {{ source('platform', 'strategy_performance') }}
where {{ account_filter('account') }}
