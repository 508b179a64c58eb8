-- Backtest-versus-paper parity: the same strategy's simulated (mode 'backtest') and paper fills,
-- matched by strategy, symbol, side and bar (fill ts truncated to var('parity_bar_unit'), UTC).
-- Several fills in one bar are aggregated (quantity sum, volume-weighted price). Differences are
-- paper minus backtest; price_diff_bps is relative to the backtest price.
with fills as (
    select strategy, symbol, side, mode,
           date_trunc('{{ var("parity_bar_unit") }}', ts, 'UTC') as bar_ts,
           sum(quantity) as quantity,
           sum(notional) / sum(quantity) as vwap,
           sum(fee) as fees,
           count(*) as fills
    from {{ ref('stg_trades') }}
    where mode in ('backtest', 'paper')
    group by strategy, symbol, side, mode, date_trunc('{{ var("parity_bar_unit") }}', ts, 'UTC')
),

backtest as (select * from fills where mode = 'backtest'),
paper as (select * from fills where mode = 'paper')

select
    coalesce(b.strategy, p.strategy) as strategy,
    coalesce(b.symbol, p.symbol) as symbol,
    coalesce(b.side, p.side) as side,
    coalesce(b.bar_ts, p.bar_ts) as bar_ts,
    case when b.strategy is null then 'paper_only'
         when p.strategy is null then 'backtest_only'
         else 'matched' end as match_status,
    b.quantity as backtest_quantity,
    p.quantity as paper_quantity,
    b.vwap as backtest_price,
    p.vwap as paper_price,
    b.fees as backtest_fees,
    p.fees as paper_fees,
    p.vwap - b.vwap as price_diff,
    (p.vwap - b.vwap) / b.vwap * 10000 as price_diff_bps,
    p.quantity - b.quantity as quantity_diff
from backtest b
full outer join paper p
  on p.strategy = b.strategy and p.symbol = b.symbol and p.side = b.side and p.bar_ts = b.bar_ts
