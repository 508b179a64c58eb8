{# `where` condition restricting a staging model to var('accounts'); true when the list is empty. #}
{% macro account_filter(column='account') -%}
  {%- set accounts = var('accounts', []) -%}
  {%- if accounts is string -%}{%- set accounts = [accounts] -%}{%- endif -%}
  {%- if accounts | length == 0 -%}
    true
  {%- else -%}
    {{ column }} in ({% for a in accounts %}'{{ a | replace("'", "''") }}'{% if not loop.last %}, {% endif %}{% endfor %})
  {%- endif -%}
{%- endmacro %}
