#!/usr/bin/env python3
"""Checks the dbt marts after `dbt build`: the same rows on every engine, every user present,
and the values the simulator's ground truth says.

  check_marts.py dump --duckdb FILE OUT.json         (with the dbt-duckdb venv's python)
  check_marts.py dump --pg "DSN" OUT.json            (with the dbt-postgres venv's python)
  check_marts.py compare A.json [B.json ...] --sim URL --userids 1,2,3

`dump` writes every mart's rows (values made comparable: numbers as floats, dates and times
as ISO text), ordered by its key. `compare` fails (exit 1, one line per problem) when two
dumps differ, when a user has no rows in a mart every simulated user has data for, or when a
weigh-in, a night or a day's steps differs from the truth (GET /_sim/truth).
"""

import argparse
import datetime
import decimal
import json
import math
import sys
import urllib.parse
import urllib.request

# Each mart and its key (the order rows are compared in).
MARTS = {
    "fct_body_composition": ["userid", "grpid"],
    "fct_body_composition_daily": ["userid", "local_date"],
    "fct_blood_pressure": ["userid", "grpid"],
    "fct_sleep_nightly": ["userid", "sleep_id"],
    "fct_sleep_daily": ["userid", "night_date"],
    "fct_activity_daily": ["userid", "local_date"],
    "fct_workouts": ["userid", "workout_id"],
    "fct_ecg_recordings": ["userid", "signalid"],
}
# Marts every user of the simulator's default (full) profile has rows in.
EVERY_USER = ["fct_body_composition", "fct_body_composition_daily", "fct_sleep_nightly", "fct_sleep_daily",
              "fct_activity_daily"]
# Hours a night's stages summed from its sleep_series may differ from the summary's (rounding).
STAGE_TOLERANCE_H = 0.02


def plain(v):
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    return v


def dump(args):
    if args.duckdb:
        try:
            import duckdb
        except ImportError:
            sys.exit("check_marts: the duckdb module is missing: run this with the dbt-duckdb venv's python")
        con = duckdb.connect(args.duckdb, read_only=True)
        cur = con
    else:
        try:
            import psycopg2
        except ImportError:
            sys.exit("check_marts: psycopg2 is missing: run this with the dbt-postgres venv's python")
        con = psycopg2.connect(args.pg)
        cur = con.cursor()
    out = {}
    for table, key in MARTS.items():
        cur.execute(f"select * from {args.schema}.{table} order by {', '.join(key)}")
        cols = [d[0] for d in cur.description]
        out[table] = {"columns": cols, "rows": [[plain(v) for v in row] for row in cur.fetchall()]}
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(f"check_marts: dumped {sum(len(t['rows']) for t in out.values())} rows of {len(out)} marts "
          f"to {args.out}", file=sys.stderr)


def same(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def differences(name_a, a, name_b, b):
    """Lines naming how dump b differs from dump a."""
    problems = []
    for table in MARTS:
        ta, tb = a[table], b[table]
        if ta["columns"] != tb["columns"]:
            problems.append(f"{table}: columns differ: {name_a} {ta['columns']}, {name_b} {tb['columns']}")
            continue
        if len(ta["rows"]) != len(tb["rows"]):
            problems.append(f"{table}: {len(ta['rows'])} rows on {name_a}, {len(tb['rows'])} on {name_b}")
            continue
        for ra, rb in zip(ta["rows"], tb["rows"]):
            bad = [c for c, x, y in zip(ta["columns"], ra, rb) if not same(x, y)]
            if bad:
                problems.append(f"{table}: row {dict(zip(ta['columns'], ra))} differs on {name_b} in {bad}: "
                                f"{[rb[ta['columns'].index(c)] for c in bad]}")
                break
    return problems


def rows(dump_, table):
    t = dump_[table]
    return [dict(zip(t["columns"], r)) for r in t["rows"]]


def truth(sim, module, userid):
    q = urllib.parse.urlencode({"module": module, "userid": userid})
    with urllib.request.urlopen(f"{sim}/_sim/truth?{q}", timeout=30) as r:
        return json.load(r)


def truth_problems(d, sim, userids):
    problems = []
    for uid in userids:
        weights = {}
        for g in truth(sim, "getmeas", uid):
            if g["category"] != 1:
                continue
            for m in g["measures"]:
                if m["type"] == 1 and m.get("position") in (None, -1):
                    weights[g["grpid"]] = float(decimal.Decimal(m["value"]).scaleb(m["unit"]))
        got = {r["grpid"]: r["weight_kg"] for r in rows(d, "fct_body_composition")
               if r["userid"] == uid and r["weight_kg"] is not None}
        if set(got) != set(weights) or any(not same(got[k], weights[k]) for k in weights):
            wrong = sorted(k for k in set(got) | set(weights) if not same(got.get(k), weights.get(k)))
            problems.append(f"user {uid}: fct_body_composition weights differ from the truth for groups {wrong[:5]} "
                            f"({len(got)} weigh-ins, truth {len(weights)})")
        summaries = truth(sim, "getsummary", uid)
        nights = {s["id"] for s in summaries}
        got_nights = {r["sleep_id"] for r in rows(d, "fct_sleep_nightly") if r["userid"] == uid}
        if got_nights != nights:
            problems.append(f"user {uid}: fct_sleep_nightly has {len(got_nights)} nights, truth {len(nights)} "
                            f"(missing {sorted(nights - got_nights)[:3]}, unexpected {sorted(got_nights - nights)[:3]})")
        dates = {s["date"] for s in summaries}
        got_dates = [r["night_date"] for r in rows(d, "fct_sleep_daily") if r["userid"] == uid]
        if sorted(got_dates) != sorted(dates):
            problems.append(f"user {uid}: fct_sleep_daily has {len(got_dates)} rows for {len(set(got_dates))} nights, "
                            f"truth {len(dates)} nights")
        for r in rows(d, "fct_sleep_nightly"):
            if r["userid"] != uid or not r["segments"]:
                continue
            off = [s for s in ("deep", "light", "rem")
                   if abs((r[f"series_{s}_hours"] or 0) - (r[f"{s}_sleep_hours"] or 0)) > STAGE_TOLERANCE_H]
            if off:
                problems.append(f"user {uid}: night {r['sleep_id']}: {off} hours summed from sleep_series "
                                f"differ from the summary's ({r})")
                break
        steps = {a["date"]: a.get("steps") for a in truth(sim, "getactivity", uid)}
        got_steps = {r["local_date"]: r["steps"] for r in rows(d, "fct_activity_daily")
                     if r["userid"] == uid and r["steps"] is not None}
        if got_steps != {k: v for k, v in steps.items() if v is not None}:
            wrong = sorted(k for k in set(got_steps) | set(steps) if got_steps.get(k) != steps.get(k))
            problems.append(f"user {uid}: fct_activity_daily steps differ from the truth on {wrong[:5]}")
    return problems


def compare(args):
    dumps = []
    for path in args.dumps:
        with open(path) as f:
            dumps.append((path, json.load(f)))
    userids = [int(u) for u in args.userids.split(",")]
    problems = []
    first_name, first = dumps[0]
    for name, d in dumps[1:]:
        problems += differences(first_name, first, name, d)
    for name, d in dumps:
        for table in EVERY_USER:
            have = {r["userid"] for r in rows(d, table)}
            missing = sorted(set(userids) - have)
            if missing:
                problems.append(f"{name}: {table} has no rows for user(s) {missing}")
            extra = sorted(have - set(userids))
            if extra:
                problems.append(f"{name}: {table} has rows of user(s) {extra} that were not synced")
    if args.sim:
        problems += truth_problems(first, args.sim, userids)
    for p in problems:
        print(f"check_marts: FAIL {p}", file=sys.stderr)
    if problems:
        return 1
    counts = ", ".join(f"{t} {len(first[t]['rows'])}" for t in MARTS)
    print(f"check_marts: ok: {len(dumps)} engine(s) agree row for row ({counts}); "
          f"{len(userids)} users in every mart; weigh-ins, nights, stages and steps match the simulator's truth",
          file=sys.stderr)
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    g = d.add_mutually_exclusive_group(required=True)
    g.add_argument("--duckdb")
    g.add_argument("--pg")
    d.add_argument("--schema", default="analytics_marts")
    d.add_argument("out")
    c = sub.add_parser("compare")
    c.add_argument("dumps", nargs="+")
    c.add_argument("--sim")
    c.add_argument("--userids", required=True)
    args = ap.parse_args()
    if args.cmd == "dump":
        try:
            dump(args)
        except Exception as e:  # noqa: BLE001 - one line, not a traceback
            sys.exit(f"check_marts: cannot read the marts (did dbt build run?): {e}")
        return 0
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
