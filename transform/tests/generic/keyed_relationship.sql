{#- Fails on every row of `model` whose `columns` (e.g. userid and a key) match no row of
    `to`: a relationship that holds per user, not only for the key alone (two users' ids may
    be equal). `to_columns` names the columns in `to` when they differ. -#}
{% test withings_keyed_relationship(model, columns, to, to_columns=none) %}
{%- set theirs = to_columns or columns -%}
select {% for c in columns %}child.{{ c }}{{ ", " if not loop.last }}{% endfor %}
from {{ model }} as child
where {% for c in columns %}child.{{ c }} is not null{{ " and " if not loop.last }}{% endfor %}
  and not exists (
    select 1 from {{ to }} as parent
    where {% for c in columns %}parent.{{ theirs[loop.index0] }} = child.{{ c }}{{ " and " if not loop.last }}{% endfor %}
  )
{% endtest %}
