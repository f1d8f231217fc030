#!/usr/bin/env python3
"""Writes a static HTML report (inline SVG, no script, opens offline) from the dbt marts in a
DuckDB file: weight trend, sleep per night, steps per day, one section per user.

  report.py DUCKDB_FILE OUT.html [--schema analytics_marts]
"""

import argparse
import html
import sys

W, H, PAD = 720, 220, 56


def scale(lo, hi, a, b):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) * (b - a) / span


def tick(v, hi):
    """An axis label: whole numbers with thousands separators for large ranges (steps)."""
    return f"{v:,.0f}" if hi >= 100 else f"{v:.1f}"


def axes(ylo, yhi, unit, labels):
    y = scale(ylo, yhi, H - PAD, PAD / 2)
    out = [f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#888"/>',
           f'<line x1="{PAD}" y1="{PAD / 2}" x2="{PAD}" y2="{H - PAD}" stroke="#888"/>']
    for v in (ylo, (ylo + yhi) / 2, yhi):
        out.append(f'<text x="{PAD - 4}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">{tick(v, yhi)}</text>')
        out.append(f'<line x1="{PAD}" y1="{y(v):.1f}" x2="{W - 10}" y2="{y(v):.1f}" stroke="#eee"/>')
    out.append(f'<text x="4" y="12" font-size="11">{html.escape(unit)}</text>')
    for x, text in labels:
        out.append(f'<text x="{x:.1f}" y="{H - PAD + 16}" text-anchor="middle" font-size="11">{html.escape(text)}</text>')
    return out


def date_labels(days, x):
    step = max(1, len(days) // 6)
    return [(x(i), str(d)[5:]) for i, d in enumerate(days) if i % step == 0]


def svg(parts, title):
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{html.escape(title)}" '
            f'width="{W}" height="{H}" viewBox="0 0 {W} {H}">' + "".join(parts) + "</svg>")


def line_chart(points, unit, title):
    if not points:
        return '<p class="empty">No data.</p>'
    days = [d for d, _ in points]
    vals = [v for _, v in points]
    lo, hi = min(vals), max(vals)
    lo, hi = lo - 0.5, hi + 0.5
    x = scale(0, max(1, len(points) - 1), PAD + 10, W - 20)
    y = scale(lo, hi, H - PAD, PAD / 2)
    path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(vals))
    parts = axes(lo, hi, unit, date_labels(days, x))
    parts.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{path}"/>')
    parts += [f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="#1f77b4"><title>{d}: {v:.2f} {html.escape(unit)}</title></circle>'
              for i, (d, v) in enumerate(points)]
    return svg(parts, title)


def bar_chart(rows, unit, title, stacked_names=None, colors=None):
    """rows: (day, [values]) with one value per stacked series."""
    if not rows:
        return '<p class="empty">No data.</p>'
    colors = colors or ["#2ca02c"]
    totals = [sum(v or 0 for v in vals) for _, vals in rows]
    hi = max(totals) or 1.0
    n = len(rows)
    slot = (W - PAD - 20) / n
    x = lambda i: PAD + 10 + slot * i + slot / 2  # noqa: E731
    y = scale(0, hi, H - PAD, PAD / 2)
    parts = axes(0, hi, unit, date_labels([d for d, _ in rows], x))
    for i, (d, vals) in enumerate(rows):
        base = 0.0
        for k, v in enumerate(vals):
            v = v or 0.0
            top = base + v
            name = stacked_names[k] if stacked_names else unit
            parts.append(f'<rect x="{x(i) - slot * 0.35:.1f}" y="{y(top):.1f}" width="{slot * 0.7:.1f}" '
                         f'height="{max(0.0, y(base) - y(top)):.1f}" fill="{colors[k % len(colors)]}">'
                         f'<title>{d}: {html.escape(name)} {v:.1f}</title></rect>')
            base = top
    if stacked_names:
        for k, name in enumerate(stacked_names):
            parts.append(f'<rect x="{W - 110}" y="{8 + 14 * k}" width="10" height="10" fill="{colors[k]}"/>'
                         f'<text x="{W - 96}" y="{17 + 14 * k}" font-size="11">{html.escape(name)}</text>')
    return svg(parts, title)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("db")
    ap.add_argument("out")
    ap.add_argument("--schema", default="analytics_marts")
    args = ap.parse_args()
    try:
        import duckdb
    except ImportError:
        sys.exit("report: the duckdb module is missing: run this with the dbt-duckdb venv's python")
    try:
        con = duckdb.connect(args.db, read_only=True)
    except duckdb.Error as e:
        sys.exit(f"report: cannot open {args.db}: {e}")
    s = args.schema

    def q(sql, *params):
        try:
            return con.execute(sql.format(s=s), list(params)).fetchall()
        except duckdb.Error as e:
            sys.exit(f"report: query failed on {args.db} (did dbt build run?): {e}")

    users = [u for (u,) in q("select distinct userid from {s}.fct_activity_daily union "
                              "select distinct userid from {s}.fct_body_composition_daily order by 1")]
    sections = []
    for uid in users:
        weight = q("select local_date, weight_kg from {s}.fct_body_composition_daily "
                   "where userid = ? and weight_kg is not null order by local_date", uid)
        # One row per night (fct_sleep_daily: the preferred device when several recorded it).
        sleep = q("select night_date, deep_sleep_hours, light_sleep_hours, rem_sleep_hours, sleep_score "
                  "from {s}.fct_sleep_daily where userid = ? order by night_date", uid)
        steps = q("select local_date, coalesce(steps, intraday_steps) from {s}.fct_activity_daily "
                  "where userid = ? order by local_date", uid)
        avg_steps = sum(v or 0 for _, v in steps) / len(steps) if steps else 0
        avg_sleep = (sum((d or 0) + (l or 0) + (r or 0) for _, d, l, r, _ in sleep) / len(sleep)) if sleep else 0
        last_w = f"{weight[-1][1]:.1f} kg" if weight else "none"
        sections.append(f"""
<section>
<h2>User {uid}</h2>
<p class="facts">latest weight {last_w} &middot; {len(sleep)} nights, {avg_sleep:.1f} h asleep on average
&middot; {len(steps)} days, {avg_steps:,.0f} steps a day on average</p>
<h3>Weight trend (kg, daily mean)</h3>
{line_chart([(d, float(v)) for d, v in weight], "kg", f"weight of user {uid}")}
<h3>Sleep per night (hours by stage)</h3>
{bar_chart([(d, [float(a or 0), float(b or 0), float(c or 0)]) for d, a, b, c, _ in sleep], "hours",
           f"sleep of user {uid}", ["deep", "light", "REM"], ["#3b3b98", "#7f8fdc", "#c589e8"])}
<h3>Steps per day</h3>
{bar_chart([(d, [float(v or 0)]) for d, v in steps], "steps", f"steps of user {uid}")}
</section>""")
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Withings report</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222;max-width:780px}}h2{{border-bottom:1px solid #ccc}}
.facts{{color:#555}}.empty{{color:#999}}svg{{background:#fff}}</style></head>
<body><h1>Withings report</h1>
<p>From the dbt marts in {html.escape(args.db.rsplit('/', 1)[-1])} (schema {html.escape(s)}): {len(users)} user(s).</p>
{''.join(sections) or '<p class="empty">No users in the marts.</p>'}
</body></html>
"""
    with open(args.out, "w") as f:
        f.write(doc)
    print(f"report: wrote {args.out} ({len(users)} user(s))", file=sys.stderr)


if __name__ == "__main__":
    main()
