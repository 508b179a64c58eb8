{# A bar interval code such as '1m', '15m', '1h', '1d', '1w' as a Postgres interval. #}
{% macro interval_duration(code) -%}
  (regexp_replace({{ code }}, '[a-zA-Z]+$', '') || ' ' ||
   case regexp_replace({{ code }}, '^[0-9]+', '')
     when 's' then 'seconds' when 'm' then 'minutes' when 'h' then 'hours'
     when 'd' then 'days' when 'w' then 'weeks' when 'M' then 'months'
   end)::interval
{%- endmacro %}
