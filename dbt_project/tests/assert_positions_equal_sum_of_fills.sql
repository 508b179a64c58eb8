-- positions.quantity must equal the sum of signed paper/live fill quantities per account, strategy and
-- symbol (backtest fills never move a real position); a position without fills must be zero, and fills
-- without a position row mean a missing position. Every row returned is a mismatch.
{{ config(meta={'dagster': {'ref': {'name': 'stg_positions'}}}) }}
with fills as (
    select account, strategy, symbol, sum(signed_quantity) as fill_quantity
    from {{ ref('stg_trades') }}
    where mode <> 'backtest'
    group by account, strategy, symbol
)

select
    coalesce(p.account, f.account) as account,
    coalesce(p.strategy, f.strategy) as strategy,
    coalesce(p.symbol, f.symbol) as symbol,
    p.quantity as position_quantity,
    f.fill_quantity
from {{ ref('stg_positions') }} p
full outer join fills f using (account, strategy, symbol)
where coalesce(p.quantity, 0) <> coalesce(f.fill_quantity, 0)
