#!/usr/bin/env python3
"""The Live Logs benchmark's helper (standard library only), driven by bench/live-logs.sh.

  live_logs.py install  --url U --token T --count K
      installs K Button integrations; prints their ids, one a line
  live_logs.py fill     (--sqlite FILE | --postgres URL) --entries N --integrations ID,...
      fills a stopped service's store with N live-log entries (one delivery each, and their counts) by
      direct SQL: the last integration gets only `filtered` entries (no marketing
      consent: what `loadgen --mix filtered` makes), the others a realistic mix of
      outcomes and event names. The indexes of the two tables are dropped first and
      made again afterwards, with the definitions the store's own migrations gave them.
  live_logs.py measure  --url U --token T --integrations ID,... --entries N --requests R
                        --label L --out FILE.jsonl
      measures every filter and page over HTTP: R requests each, p50/p99/max; prints a
      table and appends one JSON line per case to FILE.jsonl.

Entry i (0 <= i < N) belongs to integration i % K, is made at T0 + i * SPAN / N ms, and
its id is `log_` + the ULID of that millisecond whose random part is i: ids are
time-ordered as the service's own are (src/domain/ids.rs). Its messageId is
`bench-{i}`, so a measurement can name stored ones without reading the store.
"""

import argparse
import http.client
import json
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.parse

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
SPAN_MS = 6 * 24 * 3600 * 1000  # six days: inside the default retention of seven
T0 = 1_700_000_000_000  # fixed, so reruns make the same rows; max_age is raised to keep them


def t0_ms():
    return T0


# ---------------------------------------------------------------- generating rows


def ulid_text(ms_expr, i_expr, dialect):
    """SQL for the 26 lower-case Crockford base-32 characters of the ULID (ms, i)."""

    def char(expr, shift):
        idx = f"((({expr}) >> {shift}) & 31) + 1"
        if dialect == "pg":
            idx = f"({idx})::int"
        return f"substr('{ALPHABET}', {idx}, 1)"

    time_part = [char(ms_expr, s) for s in range(45, -1, -5)]
    # 80 random bits: i's low 35 bits in the last 7 characters, zeros above.
    random_part = ["'000000000'"] + [char(i_expr, s) for s in range(30, -1, -5)]
    return " || ".join(time_part + random_part)


# Outcomes of the mixed integrations, by r = a hash of i in 0..9999.
MIXED = [
    (9000, "delivered"),
    (9500, "retry_scheduled"),
    (9800, "filtered"),
    (9950, "mapping_failed"),
    (9990, "failed"),
    (10000, "dead_lettered"),
]
# Event names by e = another hash of i in 0..9999 (tools/loadgen's mix: 10% purchase,
# 20% add_to_cart, 70% product_view), with a rare one.
EVENTS = [
    (5, "order_refunded", "order.refund"),
    (1000, "purchase", "order.create"),
    (3000, "add_to_cart", "activity.add-to-cart"),
    (10000, "product_view", "activity.product-viewed"),
]
TEST_EVERY = 100_000  # one entry in 100,000 is a Test Event's


def case(expr, table, default):
    parts = " ".join(f"WHEN {expr} < {bound} THEN '{value}'" for bound, value in table)
    return f"(CASE {parts} ELSE '{default}' END)"


def select_rows(n, k, filtered_only, dialect):
    """The SQL SELECT of rows (i, k, ms, r, e, ulid, ...) for n entries."""
    if dialect == "pg":
        source = f"generate_series(0::bigint, {n - 1}) AS s(i)"
    else:
        source = "s"
    ms = f"({T0} + i * {SPAN_MS} / {n})"
    r = "((i * 2654435761) % 10000)"
    e = "((i * 40503 + 7) % 10000)"
    return source, ms, r, e


def fill_sql(n, integrations, dialect, response_bytes=False):
    k = len(integrations)
    last = k - 1
    source, ms, r, e = select_rows(n, k, None, dialect)
    ints = ", ".join(f"'{x}'" for x in integrations)
    if dialect == "pg":
        integ = f"(ARRAY[{ints}])[(i % {k})::int + 1]"
        b = lambda x: f"convert_to({x}, 'UTF8')"  # noqa: E731
        true, false = "true", "false"
        text_i = "i::text"
    else:
        integ = f"(CASE i % {k} " + " ".join(
            f"WHEN {j} THEN '{x}'" for j, x in enumerate(integrations)) + " END)"
        b = lambda x: x  # noqa: E731
        true, false = "1", "0"
        text_i = "CAST(i AS TEXT)"
    ulid = ulid_text(ms, "i", dialect)
    outcome = (f"(CASE WHEN i % {k} = {last} THEN 'filtered' ELSE "
               + case(r, MIXED, "delivered") + " END)")
    event = case(e, [(a, b_) for a, b_, _ in EVENTS], "product_view")
    call = case(e, [(a, c) for a, _, c in EVENTS], "activity.product-viewed")
    test = f"(CASE WHEN i % {TEST_EVERY} = 0 THEN {true} ELSE {false} END)"
    message = f"(CASE WHEN i % {TEST_EVERY} = 0 THEN 'test-evt_' ELSE 'bench-' END || {text_i})"
    # The per-row values, computed once in a subquery.
    base = (f"SELECT i, {integ} AS integration_id, {ms} AS ms, {ulid} AS ulid, {outcome} AS outcome, "
            f"{event} AS event_name, {call} AS call, {test} AS test, {message} AS message_id FROM {source}")
    # PostgreSQL keeps answers as bytes from migration 0008 on (stored as they are,
    # which the service reads as written before packing).
    pack_response = (lambda x: f"convert_to({x}, 'UTF8')") if response_bytes else (lambda x: x)  # noqa: E731
    response = ("'{\"headers\":{\"content-type\":\"application/json\",\"x-request-id\":\"req-' || ulid || "
                "'\"},\"body\":\"{\\\"object\\\":{\\\"status\\\":\\\"open\\\",\\\"button_order_id\\\":\\\"btnorder-' || ulid || "
                "'\\\"}}\",\"truncated\":false}'")
    status_code = ("(CASE outcome WHEN 'delivered' THEN 200 WHEN 'retry_scheduled' THEN 503 "
                   "WHEN 'failed' THEN 400 WHEN 'dead_lettered' THEN 503 ELSE NULL END)")
    status_line = ("(CASE outcome WHEN 'delivered' THEN '200 OK' WHEN 'retry_scheduled' THEN '503 Service Unavailable' "
                   "WHEN 'failed' THEN '400 Bad Request' WHEN 'dead_lettered' THEN '503 Service Unavailable' ELSE NULL END)")
    answered = "outcome IN ('delivered', 'retry_scheduled', 'failed', 'dead_lettered')"
    error = ("(CASE outcome WHEN 'filtered' THEN 'no marketing consent: context.consent.canonical.marketing is false' "
             "WHEN 'mapping_failed' THEN 'properties.order_id: missing (required by order.create)' "
             "WHEN 'failed' THEN 'Button refused the request: 400' "
             "WHEN 'retry_scheduled' THEN 'Button answered 503' WHEN 'dead_lettered' THEN 'Button answered 503' ELSE NULL END)")
    hint = ("(CASE outcome WHEN 'mapping_failed' THEN 'Map order_id in the blueprint, or send properties.order_id' "
            "ELSE NULL END)")
    attempt = f"(CASE WHEN {answered} THEN 1 ELSE NULL END)"
    next_at = "(CASE outcome WHEN 'retry_scheduled' THEN ms + 2000 ELSE NULL END)"
    latency = f"(CASE WHEN {answered} THEN 3.25 + (i % 97) / 10.0 ELSE NULL END)"
    logs = (f"INSERT INTO live_logs (id, integration_id, delivery_id, message_id, event_name, call, attempt, outcome, "
            f"status_code, status_line, latency_ms, error, hint, warnings, next_attempt_at, response, test, created_at, replaces) "
            f"SELECT 'log_' || ulid, integration_id, 'dlv_' || ulid, {b('message_id')}, {b('event_name')}, call, {attempt}, outcome, "
            f"{status_code}, {status_line}, {latency}, {error}, {hint}, NULL, {next_at}, "
            f"(CASE WHEN {answered} THEN {pack_response(response)} ELSE NULL END), test, ms, NULL FROM ({base}) AS v")
    state = ("(CASE outcome WHEN 'delivered' THEN 'delivered' WHEN 'retry_scheduled' THEN 'delivered' "
             "WHEN 'failed' THEN 'failed' WHEN 'dead_lettered' THEN 'dead' WHEN 'filtered' THEN 'filtered' "
             "ELSE 'mapping_failed' END)")
    sent = "outcome NOT IN ('filtered', 'mapping_failed')"
    url = ("(CASE WHEN call LIKE 'order.%' THEN 'https://api.usebutton.com/v1/order' "
           "ELSE 'https://app-bench.mobileapi.usebutton.com/v1/app/activity' END)")
    body = ("'{\"btn_ref\":\"srctok-' || substr(ulid, 20, 6) || '\",\"order_id\":\"' || message_id || "
            "'\",\"currency\":\"USD\",\"total\":8947,\"purchase_date\":\"2024-05-01T10:00:00Z\",\"customer\":{\"id\":\"u' || (i % 997) || "
            "'\"},\"line_items\":[{\"identifier\":\"A' || (i % 997) || '\",\"total\":3998,\"amount\":1999,\"quantity\":2,"
            "\"description\":\"Blue shirt\",\"sku\":\"SKU-A' || (i % 997) || '\"}]}'")
    body_bytes = f"convert_to({body}, 'UTF8')" if dialect == "pg" else f"CAST({body} AS BLOB)"
    deliveries = (f"INSERT INTO deliveries (id, integration_id, message_id, event_name, call, state, attempts, available_at, "
                  f"lease_token, url, body, warnings, test, created_at, updated_at, order_key) "
                  f"SELECT 'dlv_' || ulid, integration_id, {b('message_id')}, {b('event_name')}, call, {state}, "
                  f"(CASE WHEN {sent} THEN 1 ELSE 0 END), ms, NULL, "
                  f"(CASE WHEN {sent} THEN {url} ELSE NULL END), (CASE WHEN {sent} THEN {body_bytes} ELSE NULL END), "
                  f"NULL, test, ms, ms + 50, NULL FROM ({base}) AS v")
    per = [(x, n // k + (1 if j < n % k else 0)) for j, x in enumerate(integrations)]
    counts = [f"INSERT INTO live_log_counts (integration_id, entries) VALUES ('{x}', {c}) "
              f"ON CONFLICT (integration_id) DO UPDATE SET entries = excluded.entries" for x, c in per]
    counts.append("INSERT INTO outcome_counts (integration_id, outcome, count) SELECT integration_id, outcome, COUNT(*) "
                  "FROM live_logs WHERE true GROUP BY integration_id, outcome "
                  "ON CONFLICT (integration_id, outcome) DO UPDATE SET count = excluded.count")
    return logs, deliveries, counts


def recursive(n, statement):
    """SQLite: the statement over WITH RECURSIVE s(i) counting 0..n-1."""
    head = f"WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {n - 1}) "
    insert, rest = statement.split(" SELECT ", 1)
    return f"{insert} {head}SELECT {rest}"


def fill_sqlite(path, n, integrations):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA cache_size = -1048576")
    db.execute("PRAGMA temp_store = memory")
    db.execute("PRAGMA synchronous = off")
    indexes = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        "AND tbl_name IN ('live_logs', 'deliveries')").fetchall()
    logs, deliveries, counts = fill_sql(n, integrations, "sqlite")
    db.execute("BEGIN")
    for name, _ in indexes:
        db.execute(f"DROP INDEX {name}")
    started = time.time()
    db.execute(recursive(n, logs))
    print(f"  live_logs: {n} rows in {time.time() - started:.0f} s", file=sys.stderr)
    started = time.time()
    db.execute(recursive(n, deliveries))
    print(f"  deliveries: {n} rows in {time.time() - started:.0f} s", file=sys.stderr)
    for c in counts:
        db.execute(c)
    for name, sql in indexes:
        started = time.time()
        db.execute(sql)
        print(f"  index {name} in {time.time() - started:.0f} s", file=sys.stderr)
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def psql(url, sql):
    subprocess.run(["psql", url, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True)


def fill_postgres(url, n, integrations):
    rows = subprocess.run(
        ["psql", url, "-qAt", "-F", "\t", "-c",
         "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('live_logs', 'deliveries') "
         "AND indexname NOT LIKE '%_pkey'"],
        check=True, capture_output=True, text=True).stdout.strip().splitlines()
    indexes = [r.split("\t", 1) for r in rows if r]
    response_type = subprocess.run(
        ["psql", url, "-qAt", "-c",
         "SELECT data_type FROM information_schema.columns WHERE table_name = 'live_logs' AND column_name = 'response'"],
        check=True, capture_output=True, text=True).stdout.strip()
    logs, deliveries, counts = fill_sql(n, integrations, "pg", response_type == "bytea")
    settings = "SET synchronous_commit = off; SET maintenance_work_mem = '1GB'; SET max_parallel_maintenance_workers = 1; "
    psql(url, " ".join(f"DROP INDEX {name};" for name, _ in indexes) or "SELECT 1")
    started = time.time()
    psql(url, settings + logs)
    print(f"  live_logs: {n} rows in {time.time() - started:.0f} s", file=sys.stderr)
    started = time.time()
    psql(url, settings + deliveries)
    print(f"  deliveries: {n} rows in {time.time() - started:.0f} s", file=sys.stderr)
    psql(url, "; ".join(counts))
    for name, sql in indexes:
        started = time.time()
        psql(url, settings + sql)
        print(f"  index {name} in {time.time() - started:.0f} s", file=sys.stderr)
    # What autovacuum does after a bulk load, done now.
    psql(url, "VACUUM ANALYZE live_logs")
    psql(url, "VACUUM ANALYZE deliveries")


# ---------------------------------------------------------------- installing


class Client:
    def __init__(self, url, token):
        parsed = urllib.parse.urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.token = token
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def request(self, method, path, body=None):
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            body = json.dumps(body)
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
                if attempt:
                    raise


def install(url, token, count):
    client = Client(url, token)
    for j in range(count):
        status, body = client.request("POST", "/v1/admin/integration-catalog/button/install", {
            "name": f"Button (live logs bench {j})", "variant": "default", "delivery_mode": "server_side",
            "config": {"application_id": f"app-bench{j}", "api_key": "sk-bench-key"}})
        if status != 201:
            sys.exit(f"install answered {status}: {body[:300]!r}")
        print(json.loads(body)["id"])


# ---------------------------------------------------------------- measuring


def rfc3339(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def cases(integrations, n, rng):
    """(name, integration, function giving a query string per request) for every case."""
    k = len(integrations)
    mixed, filtered_only = integrations[0], integrations[-1]

    def stored_message():
        # An entry of the mixed integration (i % k == 0), not a test one.
        i = rng.randrange(0, max(n // k, 1)) * k
        if i % TEST_EVERY == 0:
            i += k
        return f"bench-{i}"

    def hour_window():
        start = T0 + rng.randrange(0, SPAN_MS - 3_600_000)
        return f"since={urllib.parse.quote(rfc3339(start))}&until={urllib.parse.quote(rfc3339(start + 3_600_000))}"

    def day_ago():
        return f"until={urllib.parse.quote(rfc3339(T0 + SPAN_MS // 6))}"

    fixed = lambda q: (lambda: q)  # noqa: E731
    return [
        ("newest page", mixed, fixed("")),
        ("newest page, limit 100", mixed, fixed("limit=100")),
        ("outcome=delivered (90%)", mixed, fixed("outcome=delivered&limit=100")),
        ("outcome=retry_scheduled (5%)", mixed, fixed("outcome=retry_scheduled&limit=100")),
        ("outcome=failed (0.4%)", mixed, fixed("outcome=failed&limit=100")),
        ("outcome=dead_lettered (0.1%)", mixed, fixed("outcome=dead_lettered&limit=100")),
        ("outcome=paused (none)", mixed, fixed("outcome=paused&limit=100")),
        ("outcome=delivered, all filtered (none)", filtered_only, fixed("outcome=delivered&limit=100")),
        ("event=purchase (10%)", mixed, fixed("event=purchase&limit=100")),
        ("event=order_refunded (0.05%)", mixed, fixed("event=order_refunded&limit=100")),
        ("event=unknown (none)", mixed, fixed("event=no_such_event&limit=100")),
        ("message_id=stored", mixed, lambda: f"message_id={stored_message()}"),
        ("message_id=unknown (none)", mixed, fixed("message_id=unknown")),
        ("since/until: 1 hour", mixed, lambda: hour_window() + "&limit=100"),
        ("until: 5 days ago", mixed, lambda: day_ago() + "&limit=100"),
        ("test=true (0.001%)", mixed, fixed("test=true&limit=100")),
        ("test=false", mixed, fixed("test=false&limit=100")),
        ("outcome=failed&event=purchase", mixed, fixed("outcome=failed&event=purchase&limit=100")),
        ("outcome=delivered&event=order_refunded", mixed, fixed("outcome=delivered&event=order_refunded&limit=100")),
        ("outcome=dead_lettered&1 hour", mixed, lambda: "outcome=dead_lettered&" + hour_window() + "&limit=100"),
        ("event=purchase&test=true", mixed, fixed("event=purchase&test=true&limit=100")),
        ("outcome=filtered&test=true (none)", filtered_only, fixed("outcome=filtered&test=true&limit=100")),
    ]


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))]


def measure(url, token, integrations, n, requests, label, out):
    client = Client(url, token)
    rng = random.Random(13)
    results = []

    def run(name, integration, make, paging=False):
        times, entries = [], 0
        path = f"/v1/admin/integrations/{integration}/logs"
        cursor = None
        # One warm-up request (connection, prepared statements).
        client.request("GET", f"{path}?{make()}")
        case_started = time.perf_counter()
        for _ in range(requests):
            # A slow case (a scan) stops after 20 s with at least 10 requests.
            if len(times) >= 10 and time.perf_counter() - case_started > 20:
                break
            query = make()
            if paging and cursor:
                query += f"&cursor={urllib.parse.quote(cursor)}"
            started = time.perf_counter()
            status, body = client.request("GET", f"{path}?{query}")
            elapsed = (time.perf_counter() - started) * 1000
            if status != 200:
                sys.exit(f"{name}: {status} {body[:300]!r}")
            page = json.loads(body)
            entries += len(page["data"])
            cursor = page.get("next_cursor")
            times.append(elapsed)
        times.sort()
        row = {"label": label, "case": name, "requests": len(times), "entries_stored": n,
               "p50_ms": round(percentile(times, 50), 2), "p99_ms": round(percentile(times, 99), 2),
               "max_ms": round(times[-1], 2), "entries_per_page": round(entries / len(times), 1)}
        results.append(row)
        print(f"{label:<10} {name:<42} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['max_ms']:>8.2f} "
              f"{row['entries_per_page']:>7}", flush=True)

    print(f"{'store':<10} {'case':<42} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'entries':>7}")
    for name, integration, make in cases(integrations, n, rng):
        run(name, integration, make)
    # Pages: the cursor followed from the newest entry (each request the next page).
    run("pages of 100, cursor followed", integrations[0], lambda: "limit=100", paging=True)
    run("pages of 100 of outcome=failed", integrations[0], lambda: "outcome=failed&limit=100", paging=True)
    run("pages of 100 of event=purchase", integrations[0], lambda: "event=purchase&limit=100", paging=True)
    with open(out, "a") as f:
        for row in results:
            f.write(json.dumps(row) + "\n")
    worst = max(results, key=lambda r: r["p99_ms"])
    print(f"{label}: worst p99 {worst['p99_ms']} ms ({worst['case']})")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("install")
    i.add_argument("--url", required=True)
    i.add_argument("--token", required=True)
    i.add_argument("--count", type=int, default=4)
    f = sub.add_parser("fill")
    f.add_argument("--sqlite")
    f.add_argument("--postgres")
    f.add_argument("--entries", type=int, required=True)
    f.add_argument("--integrations", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--url", required=True)
    m.add_argument("--token", required=True)
    m.add_argument("--integrations", required=True)
    m.add_argument("--entries", type=int, required=True)
    m.add_argument("--requests", type=int, default=200)
    m.add_argument("--label", required=True)
    m.add_argument("--out", required=True)
    a = p.parse_args()
    if a.command == "install":
        install(a.url, a.token, a.count)
    elif a.command == "fill":
        ids = a.integrations.split(",")
        if a.sqlite:
            fill_sqlite(a.sqlite, a.entries, ids)
        elif a.postgres:
            if not shutil.which("psql"):
                sys.exit("psql is needed")
            fill_postgres(a.postgres, a.entries, ids)
        else:
            sys.exit("--sqlite FILE or --postgres URL")
    else:
        measure(a.url, a.token, a.integrations.split(","), a.entries, a.requests, a.label, a.out)


if __name__ == "__main__":
    main()
