-- Daily mark-to-market P&L per account, strategy and symbol: the per-asset parts of mart_daily_pnl
-- (they sum to it), with the day's mark, which the tear sheets' equal-weight benchmark also uses.
select
    account, strategy, symbol, day,
    cumulative_pnl - coalesce(lag(cumulative_pnl) over w, 0) as pnl,
    cumulative_pnl,
    fees,
    quantity,
    mark_price,
    market_value
from {{ ref('int_daily_positions') }}
window w as (partition by account, strategy, symbol order by day)
