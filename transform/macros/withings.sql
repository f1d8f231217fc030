{#- Helpers shared by the staging models; plain SQL that DuckDB and PostgreSQL both run. -#}

{#- The column names a relation has (lower case); empty while dbt only parses. -#}
{% macro withings_columns(relation) %}
  {%- if not execute -%}{{ return([]) }}{%- endif -%}
  {{ return(adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list) }}
{% endmacro %}

{#- One row per key: the latest loaded version, tombstones dropped.
    Targets that upsert on the key (target-duckdb, target-postgres) already keep one row; an
    append-only target keeps every version (lookback re-reads repeat rows). The latest is the
    last loaded (_sdc_batched_at, then _sdc_sequence or _sdc_extracted_at), then the
    highest `modified`: whichever of these columns the target wrote. A row whose latest
    version is a tombstone (_sdc_deleted_at set) is dropped. -#}
{% macro withings_latest(table, keys) %}
  {%- set rel = source('withings', table) -%}
  {%- set cols = withings_columns(rel) -%}
  {%- set order = [] -%}
  {%- for c in ['_sdc_batched_at', '_sdc_sequence', '_sdc_extracted_at', 'modified'] -%}
    {%- if c in cols -%}{%- do order.append(c ~ ' desc nulls last') -%}{%- endif -%}
  {%- endfor -%}
  select * from (
    select src.*,
      row_number() over (partition by "{{ keys | join('", "') }}"
                         order by {{ order | join(', ') if order else '1' }}) as _withings_rank
    from {{ rel }} as src
  ) as ranked
  where _withings_rank = 1
  {%- if '_sdc_deleted_at' in cols %} and _sdc_deleted_at is null{% endif %}
{% endmacro %}

{#- Full-table streams (devices, goals): the rows of each user's latest run. target-postgres
    soft-deletes rows of older table versions (ACTIVATE_VERSION, _sdc_deleted_at); a target that
    ignores ACTIVATE_VERSION keeps them, so only the latest _sdc_table_version, else the latest
    _sdc_batched_at, of each user counts. Given up: a run whose load was split into several
    batches by the target keeps only its last batch when only _sdc_batched_at tells runs apart. -#}
{% macro withings_latest_run(table, keys) %}
  {%- set rel = source('withings', table) -%}
  {%- set cols = withings_columns(rel) -%}
  {%- set run_col = '_sdc_table_version' if '_sdc_table_version' in cols else ('_sdc_batched_at' if '_sdc_batched_at' in cols else none) -%}
  select * from ({{ withings_latest(table, keys) }}) as latest
  {%- if run_col %}
  where {{ run_col }} is null or {{ run_col }} = (
    select max(r.{{ run_col }}) from {{ rel }} as r where r.userid = latest.userid)
  {%- endif %}
{% endmacro %}

{#- A UTC timestamp (the targets store date-times without zone, in UTC) as a local date. -#}
{% macro withings_local_date(ts, tz) -%}
  cast((cast({{ ts }} as timestamp) at time zone 'UTC') at time zone coalesce({{ tz }}, 'UTC') as date)
{%- endmacro %}

{% macro withings_local_time(ts, tz) -%}
  cast((cast({{ ts }} as timestamp) at time zone 'UTC') at time zone coalesce({{ tz }}, 'UTC') as timestamp)
{%- endmacro %}

{#- Seconds between two timestamps. -#}
{% macro withings_seconds_between(a, b) -%}
  {{ return(adapter.dispatch('withings_seconds_between', 'withings')(a, b)) }}
{%- endmacro %}
{% macro default__withings_seconds_between(a, b) -%}
  extract(epoch from (cast({{ b }} as timestamp) - cast({{ a }} as timestamp)))
{%- endmacro %}
{% macro duckdb__withings_seconds_between(a, b) -%}
  date_diff('second', cast({{ a }} as timestamp), cast({{ b }} as timestamp))
{%- endmacro %}
