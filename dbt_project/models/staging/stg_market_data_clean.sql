-- Bars of the marking interval only, with the moment each bar's close became known (bar_end).
select
    exchange,
    symbol,
    interval,
    ts as bar_ts,
    ts + {{ interval_duration('interval') }} as bar_end,
    (ts at time zone 'UTC')::date as bar_date,
    open, high, low, close, volume
from {{ source('platform', 'market_data_clean') }}
where interval = '{{ var("mark_interval") }}'
