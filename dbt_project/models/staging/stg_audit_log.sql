select event_id, ts, actor, action, scope, reason, details
from {{ source('platform', 'audit_log') }}
