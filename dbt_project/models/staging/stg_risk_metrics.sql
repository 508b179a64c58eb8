select ts, (ts at time zone 'UTC')::date as metric_date, account, scope, metric, value
from {{ source('platform', 'risk_metrics') }}
where {{ account_filter('account') }}
