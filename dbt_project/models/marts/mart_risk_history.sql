-- Daily history of every risk metric per account and scope: the last value of the day, its range
-- and how many samples were taken.
select
    account, scope, metric, metric_date as day,
    (array_agg(value order by ts desc))[1] as last_value,
    min(value) as min_value,
    max(value) as max_value,
    avg(value) as avg_value,
    count(*) as samples,
    max(ts) as last_ts
from {{ ref('stg_risk_metrics') }}
group by account, scope, metric, metric_date
