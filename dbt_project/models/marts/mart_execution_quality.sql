-- Implementation shortfall and slippage per parent order: every parent the OMS recorded in parent_orders
-- (the router's TWAP/VWAP/Iceberg, the liquidator's), and every other parent id its children name
-- (older data). Conventions, shared with trading/execution/base.py (positive = cost):
--   algorithm      parent_orders.algorithm; without a parent_orders row, stg_orders.algorithm (the parent
--                  id's prefix before ':', e.g. 'twap:...', else the strategy).
--   parent time    parent_orders.created_at (the decision); without a row, the parent order's created_at
--                  when the parent is itself in orders, else the first child's created_at.
--   arrival price  parent_orders.arrival_price: the last trade price when the parent was decided
--                  (arrival_source 'parent_order'). Without a row: the close of the last clean bar of the
--                  symbol that ENDED by the parent time (bar ts is the bar's open, so a bar still open at the
--                  parent time is never used: no look-ahead) (arrival_source 'bar_close').
--   shortfall      side sign x (sum of fill notionals - arrival x filled quantity); bps are per unit of
--                  arrival notional of the filled quantity; cost adds fees.
--   slippage       per fill, side sign x (fill price - decision price) / decision price in bps, where the
--                  decision price is the same kind of close at the CHILD's created_at; quantity-weighted.
-- bar_end <= t is written as bar_ts <= t - (one bar): the same rows, and a range the (symbol, interval, ts)
-- index answers (bar_end is computed, so a condition on it scanned every bar once per order)
{%- set mark_length = interval_duration("'" ~ var('mark_interval') ~ "'") %}
with children as (
    select * from {{ ref('stg_orders') }} where parent_id is not null
),

decided as (
    select * from {{ ref('stg_parent_orders') }}
),

named_parents as (
    select
        c.parent_id, c.account, c.strategy, c.algorithm, c.exchange, c.symbol, c.side, c.mode,
        coalesce(min(p.created_at), min(c.created_at)) as parent_created_at,
        count(distinct c.client_order_id) as child_orders,
        sum(c.quantity) as child_quantity
    from children c
    left join {{ ref('stg_orders') }} p on p.client_order_id = c.parent_id
    group by c.parent_id, c.account, c.strategy, c.algorithm, c.exchange, c.symbol, c.side, c.mode
),

parents as (
    select
        coalesce(d.parent_id, n.parent_id) as parent_id,
        coalesce(d.account, n.account) as account,
        coalesce(d.strategy, n.strategy) as strategy,
        coalesce(d.algorithm, n.algorithm) as algorithm,
        coalesce(d.exchange, n.exchange) as exchange,
        coalesce(d.symbol, n.symbol) as symbol,
        coalesce(d.side, n.side) as side,
        coalesce(d.mode, n.mode) as mode,
        coalesce(d.created_at, n.parent_created_at) as parent_created_at,
        coalesce(n.child_orders, 0) as child_orders,
        coalesce(n.child_quantity, 0) as child_quantity,
        d.quantity as parent_quantity,
        d.status as parent_status,
        d.arrival_price as decided_arrival_price
    from named_parents n
    full outer join decided d on d.parent_id = n.parent_id
),

child_fills as (
    select
        c.parent_id, f.fill_id, f.price, f.quantity, f.notional, f.fee,
        (select b.close from {{ ref('stg_market_data_clean') }} b
          where b.symbol = c.symbol and b.bar_ts <= c.created_at - {{ mark_length }}
          order by b.bar_ts desc, b.exchange limit 1) as decision_price
    from children c
    join {{ ref('stg_trades') }} f on f.client_order_id = c.client_order_id
),

fills_by_parent as (
    select parent_id,
           sum(quantity) as filled_quantity, sum(notional) as filled_notional, sum(fee) as fees,
           count(*) as fills,
           sum(quantity * (price - decision_price) / decision_price) / nullif(sum(quantity), 0) as rel_slippage
    from child_fills
    group by parent_id
),

with_bar as (
    select p.*,
           case when p.decided_arrival_price is null then
               (select b.close from {{ ref('stg_market_data_clean') }} b
                 where b.symbol = p.symbol and b.bar_ts <= p.parent_created_at - {{ mark_length }}
                 order by b.bar_ts desc, b.exchange limit 1)
           end as bar_arrival_price
    from parents p
),

with_arrival as (
    select w.*,
           coalesce(w.decided_arrival_price, w.bar_arrival_price) as arrival_price,
           case when w.decided_arrival_price is not null then 'parent_order'
                when w.bar_arrival_price is not null then 'bar_close'
           end as arrival_source
    from with_bar w
)

select
    a.parent_id, a.account, a.strategy, a.algorithm, a.exchange, a.symbol, a.side, a.mode,
    a.parent_created_at, a.parent_quantity, a.parent_status, a.child_orders, a.child_quantity,
    coalesce(f.fills, 0) as fills,
    coalesce(f.filled_quantity, 0) as filled_quantity,
    f.filled_notional / nullif(f.filled_quantity, 0) as avg_fill_price,
    a.arrival_price,
    a.arrival_source,
    coalesce(f.fees, 0) as fees,
    s.sign * (f.filled_notional - a.arrival_price * f.filled_quantity) as shortfall,
    s.sign * (f.filled_notional - a.arrival_price * f.filled_quantity)
        / nullif(a.arrival_price * f.filled_quantity, 0) * 10000 as shortfall_bps,
    (s.sign * (f.filled_notional - a.arrival_price * f.filled_quantity) + f.fees)
        / nullif(a.arrival_price * f.filled_quantity, 0) * 10000 as cost_bps,
    s.sign * f.rel_slippage * 10000 as slippage_bps
from with_arrival a
cross join lateral (select case a.side when 'buy' then 1 else -1 end as sign) s
left join fills_by_parent f using (parent_id)
