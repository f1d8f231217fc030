#!/usr/bin/env python3
"""Assertions of scripts/e2e: compare what the Singer targets wrote with withings-sim's ground
truth (GET /_sim/truth). Standard library only; PostgreSQL is read through `psql`.

Every check prints one line per stream and exits 1 with a clear message on a mismatch.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from decimal import Decimal

# Signal arrays (stetho_signals: 32,000 samples twice) make CSV fields far longer than the
# default limit of 128 KiB.
csv.field_size_limit(sys.maxsize)

# Every stream of the tap (scripts/e2e checks that --discover lists exactly these); the
# expected rows of each are derived from the simulator's truth in expected_rows().
STREAMS = [
    "measures", "activity", "intraday_activity", "workouts", "sleep_series", "sleep_vitals",
    "sleep_summaries", "ecg_recordings", "ecg_signals", "stetho_recordings", "stetho_signals",
    "devices", "goals",
]

failures = []


def fail(msg):
    failures.append(msg)
    print(f"  FAIL {msg}", file=sys.stderr)


def done():
    if failures:
        print(f"e2e_check: {len(failures)} check(s) failed:", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        sys.exit(1)


def truth(sim, module, userid):
    q = urllib.parse.urlencode({"module": module, "userid": userid})
    with urllib.request.urlopen(f"{sim}/_sim/truth?{q}", timeout=30) as r:
        return json.load(r)


def iso(epoch):
    return datetime.fromtimestamp(int(epoch), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def expected_rows(sim, userid, include_objectives=False):
    """The records the tap must emit for one user, per stream, keyed by primary key."""
    out = {}
    cats = (1, 2) if include_objectives else (1,)
    rows = {}
    for g in truth(sim, "getmeas", userid):
        if g["category"] not in cats:
            continue
        for m in g["measures"]:
            key = (userid, g["grpid"], m["type"], m.get("position", -1) if m.get("position") is not None else -1)
            rows[key] = {
                "grpid": g["grpid"], "type": m["type"], "raw_value": m["value"], "unit": m["unit"],
                "value": Decimal(m["value"]).scaleb(m["unit"]), "date": iso(g["date"]),
                "modified": iso(g["modified"]),
            }
    out["measures"] = rows
    out["activity"] = {(userid, a["date"]): {"steps": a.get("steps")} for a in truth(sim, "getactivity", userid)}
    intr = truth(sim, "getintradayactivity", userid)
    out["intraday_activity"] = {(userid, iso(ts)): {"steps": v.get("steps")} for ts, v in (intr or {}).items()}
    out["workouts"] = {(userid, w["id"]): {"category": w["category"], "data__calories": (w.get("data") or {}).get("calories")}
                       for w in truth(sim, "getworkouts", userid)}
    series, vitals = {}, {}
    for seg in truth(sim, "sleep_get", userid):
        dev = seg.get("hash_deviceid")
        series[(userid, iso(seg["startdate"]), dev)] = {"state": seg.get("state")}
        for name, values in seg.items():
            if isinstance(values, dict):
                for ts in values:
                    vitals.setdefault((userid, iso(ts), dev), {})[name] = values[ts]
    out["sleep_series"] = series
    out["sleep_vitals"] = vitals
    out["sleep_summaries"] = {(userid, s["id"]): {"data__total_sleep_time": (s.get("data") or {}).get("total_sleep_time")}
                              for s in truth(sim, "getsummary", userid)}
    out["ecg_recordings"] = {(userid, e["ecg"]["signalid"]): {"heart_rate": e.get("heart_rate")}
                             for e in truth(sim, "heart_list", userid) if e.get("ecg")}
    out["ecg_signals"] = {(userid, int(sid)): {"sampling_frequency": e.get("sampling_frequency"),
                                                "heart_rate": e.get("heart_rate")}
                          for sid, e in (truth(sim, "heart_get", userid) or {}).items()}
    out["stetho_recordings"] = {(userid, r["signalid"]): {"vhd": r.get("vhd"), "timestamp": iso(r["timestamp"]),
                                                          "hash_deviceid": r.get("hash_deviceid")}
                                for r in truth(sim, "stetho_list", userid)}
    out["stetho_signals"] = {(userid, int(sid)): {"size": b.get("size"), "frequency": b.get("frequency"),
                                                  "duration": b.get("duration"), "vhd": b.get("vhd")}
                             for sid, b in (truth(sim, "stetho_get", userid) or {}).items()}
    out["devices"] = {(userid, d["hash_deviceid"]): {"model": d.get("model"), "battery": d.get("battery")}
                      for d in truth(sim, "getdevice", userid)}
    goals = truth(sim, "getgoals", userid)
    out["goals"] = {(userid,): {"steps": goals.get("steps") if isinstance(goals, dict) else None}}
    return out


def expected_all(sim, userids):
    merged = {s: {} for s in STREAMS}
    for u in userids:
        for s, rows in expected_rows(sim, u).items():
            merged[s].update(rows)
    assert set(merged) == set(STREAMS), sorted(set(merged) ^ set(STREAMS))
    for s, rows in merged.items():
        if not rows:
            # A stream without data proves nothing about loading it.
            fail(f"the simulator has no {s} data for users {userids}: raise E2E_DAYS or E2E_USERS")
    return merged


def load_catalog(path):
    cat = json.load(open(path))
    return {s["tap_stream_id"]: s["key_properties"] for s in cat["streams"]}


def norm(v):
    """A key or value as the targets give it back, for comparison."""
    if isinstance(v, str) and len(v) >= 19 and v[4] == "-" and v[10] in "T ":
        # date-time: JSON "2026-11-22T01:00:00Z", Postgres "2026-11-22 01:00:00" (tz dropped)
        return v[:10] + "T" + v[11:19] + "Z"
    if isinstance(v, float) or isinstance(v, Decimal):
        return Decimal(str(v)).normalize()
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return v
    return v


def key_of(rec, keys):
    return tuple(norm(rec.get(k)) for k in keys)


def cmd_expected(a):
    exp = expected_all(a.sim, a.userids)
    print(json.dumps({s: len(rows) for s, rows in exp.items()}))


def check_rows(where, stream, got, exp_rows, keys, sample_fields=True):
    """got: list of dict records; exp_rows: {key tuple: {field: value}}."""
    gk = [key_of(r, keys) for r in got]
    ek = {tuple(norm(x) for x in k): v for k, v in exp_rows.items()}
    if len(gk) != len(set(gk)):
        fail(f"{where}: {stream}: duplicate keys ({len(gk)} rows, {len(set(gk))} distinct)")
    if set(gk) != set(ek):
        missing = list(set(ek) - set(gk))[:3]
        extra = list(set(gk) - set(ek))[:3]
        fail(f"{where}: {stream}: {len(set(gk))} keys, truth has {len(ek)} (missing e.g. {missing}, unexpected e.g. {extra})")
        return
    if sample_fields:
        byk = dict(zip(gk, got))
        bad = 0
        for k, fields in ek.items():
            for f, v in fields.items():
                if f not in byk[k]:
                    continue
                if v is not None and norm(byk[k][f]) != norm(v):
                    bad += 1
                    if bad <= 3:
                        fail(f"{where}: {stream} {k}: {f} = {byk[k][f]!r}, truth {v!r}")
        if bad > 3:
            fail(f"{where}: {stream}: {bad} mismatching values in all")
    print(f"  ok {where}: {stream}: {len(gk)} rows = truth")


def cmd_jsonl(a):
    keys = load_catalog(a.catalog)
    exp = expected_all(a.sim, a.userids)
    files = sorted(f for f in os.listdir(a.dir) if f.endswith(".jsonl"))
    want = sorted(f"{s}.jsonl" for s in a.selected)
    if files != want:
        fail(f"jsonl: files {files}, expected one per selected stream {want}")
    for s in a.selected:
        path = os.path.join(a.dir, f"{s}.jsonl")
        if not os.path.exists(path):
            continue
        recs = [json.loads(line) for line in open(path) if line.strip()]
        check_rows("jsonl", s, recs, exp[s], keys[s])
    done()


def cmd_csv(a):
    keys = load_catalog(a.catalog)
    exp = expected_all(a.sim, a.userids)
    files = sorted(f for f in os.listdir(a.dir) if f.endswith(".csv"))
    want = sorted(f"{s}.csv" for s in a.selected)
    if files != want:
        fail(f"csv: files {files}, expected one per selected stream {want}")
    for s in a.selected:
        path = os.path.join(a.dir, f"{s}.csv")
        if not os.path.exists(path):
            continue
        with open(path, newline="") as fh:
            recs = list(csv.DictReader(fh))
        check_rows("csv", s, recs, exp[s], keys[s], sample_fields=False)
    done()


def psql(a, sql):
    r = subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", a.host, "-p", str(a.port), "-U", "postgres",
                        "-d", a.db, "-c", sql], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"e2e_check: psql failed: {sql}\n{r.stderr}")
    return r.stdout


def pg_rows(a, stream, cols):
    sql = (f"select coalesce(json_agg(row_to_json(t)), '[]') from "
           f"(select {', '.join(cols)} from {a.schema}.{stream}) t")
    return json.loads(psql(a, sql))


def pg_columns(a, stream):
    out = psql(a, "select column_name from information_schema.columns "
                  f"where table_schema = '{a.schema}' and table_name = '{stream}' order by ordinal_position")
    return [c for c in out.split("\n") if c]


def pg_primary_key(a, stream):
    out = psql(a, "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid "
                  "and a.attnum = any(i.indkey) "
                  f"where i.indrelid = '{a.schema}.{stream}'::regclass and i.indisprimary")
    return sorted(c for c in out.split("\n") if c)


def cmd_postgres(a):
    keys = load_catalog(a.catalog)
    exp = expected_all(a.sim, a.userids)
    tables = sorted(t for t in psql(a, "select table_name from information_schema.tables "
                                       f"where table_schema = '{a.schema}'").split("\n") if t)
    if tables != sorted(a.selected):
        fail(f"postgres: tables {tables} in schema {a.schema}, expected the selected streams {sorted(a.selected)}")
    for s in a.selected:
        if s not in tables:
            continue
        pk = pg_primary_key(a, s)
        if pk != sorted(keys[s]):
            fail(f"postgres: {s}: primary key {pk}, expected the key properties {sorted(keys[s])}")
        cols = pg_columns(a, s)
        for absent in a.absent_column:
            t, c = absent.split(".")
            if t == s and c in cols:
                fail(f"postgres: {s}: column {c} is present although it was deselected")
        fields = {f for fields in exp[s].values() for f in fields}
        sel = [c for c in cols if c in set(keys[s]) | fields]
        rows = pg_rows(a, s, sel)
        n_distinct = int(psql(a, f"select count(*) from (select distinct {', '.join(keys[s])} from {a.schema}.{s}) t"))
        if n_distinct != len(rows):
            fail(f"postgres: {s}: {len(rows)} rows but {n_distinct} distinct keys")
        check_rows("postgres", s, rows, exp[s], keys[s])
    done()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sim", required=True)
    p.add_argument("--userids", type=lambda s: [int(x) for x in s.split(",")], required=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("expected")
    for name in ("jsonl", "csv", "postgres"):
        q = sub.add_parser(name)
        q.add_argument("--catalog", required=True)
        q.add_argument("--selected", type=lambda s: s.split(","), required=True)
        if name in ("jsonl", "csv"):
            q.add_argument("--dir", required=True)
        else:
            q.add_argument("--host", default="127.0.0.1")
            q.add_argument("--port", required=True)
            q.add_argument("--db", required=True)
            q.add_argument("--schema", required=True)
            q.add_argument("--absent-column", action="append", default=[])
    a = p.parse_args()
    {"expected": cmd_expected, "jsonl": cmd_jsonl, "csv": cmd_csv, "postgres": cmd_postgres}[a.cmd](a)


if __name__ == "__main__":
    main()
