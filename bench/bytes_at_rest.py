#!/usr/bin/env python3
"""Bytes at rest per event, table by table and index by index (bench/bytes-at-rest.sh).

  bytes_at_rest.py --sqlite FILE --events N --label L --out FILE.jsonl
      the service stopped: checkpoints the write-ahead log into the file (TRUNCATE),
      measures each table and index with the dbstat virtual table (pages in use, with
      their free space: what the file holds), then VACUUMs and measures again.
  bytes_at_rest.py --postgres URL --events N --label L --out FILE.jsonl
      VACUUM (what autovacuum does: space stays with the table for reuse) and measures
      each table (heap, TOAST, free space and visibility maps) and each index; then
      VACUUM FULL (tables and indexes rewritten compactly) and measures again.

Prints a table of bytes per event and appends one JSON line per measurement.
"""

import argparse
import json
import subprocess


def sqlite_sizes(path):
    out = subprocess.run(
        ["sqlite3", path, "SELECT name, SUM(pgsize), SUM(pgsize - unused) FROM dbstat GROUP BY name"],
        check=True, capture_output=True, text=True).stdout
    sizes = {}
    for line in out.strip().splitlines():
        name, pages, used = line.split("|")
        sizes[name] = int(pages)
    return sizes


def pg_sizes(url):
    sql = ("SELECT c.relname, CASE c.relkind WHEN 'i' THEN pg_relation_size(c.oid) ELSE pg_table_size(c.oid) END "
           "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
           "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')")
    out = subprocess.run(["psql", url, "-qAt", "-F", "|", "-c", sql],
                         check=True, capture_output=True, text=True).stdout
    return {name: int(size) for name, size in (l.split("|") for l in out.strip().splitlines())}


def psql(url, sql):
    subprocess.run(["psql", url, "-qAt", "-c", sql], check=True)


def report(label, stage, sizes, events, out):
    total = sum(sizes.values())
    print(f"\n{label}, {stage}: {total / events:.0f} B per event ({total / 1e6:.1f} MB for {events} events)")
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        if size / events >= 0.5:
            print(f"  {name:<36} {size / events:>8.0f} B")
    with open(out, "a") as f:
        f.write(json.dumps({"label": label, "stage": stage, "events": events,
                            "bytes_per_event": round(total / events, 1),
                            "relations": {k: round(v / events, 1) for k, v in sizes.items()}}) + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sqlite")
    p.add_argument("--postgres")
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    if a.sqlite:
        subprocess.run(["sqlite3", a.sqlite, "PRAGMA wal_checkpoint(TRUNCATE)"], check=True, capture_output=True)
        report(a.label, "after a checkpoint", sqlite_sizes(a.sqlite), a.events, a.out)
        subprocess.run(["sqlite3", a.sqlite, "VACUUM"], check=True)
        report(a.label, "after VACUUM", sqlite_sizes(a.sqlite), a.events, a.out)
    else:
        psql(a.postgres, "VACUUM")
        report(a.label, "after VACUUM", pg_sizes(a.postgres), a.events, a.out)
        psql(a.postgres, "VACUUM FULL")
        report(a.label, "after VACUUM FULL", pg_sizes(a.postgres), a.events, a.out)


if __name__ == "__main__":
    main()
