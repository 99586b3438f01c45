//! `loadgen`: drives the Button delivery service (or the bare baseline) with Signal
//! events and measures it.
//!
//!     loadgen setup  --url U --admin-token T --api-key K [--application-id A] [--count 1]
//!     loadgen pause  --url U --admin-token T --id INT
//!     loadgen resume --url U --admin-token T --id INT
//!     loadgen run    --url U[,U2...] --token T [--batch 1] [--rate 0] [--duration 20]
//!                    [--connections 64] [--mix realistic|filtered] [--path P]
//!                    [--max-events N] [--fake URL] [--drain 60] [--pid PID[,PID2...]]
//!                    [--spread IDS_FILE] [--label L] [--out FILE]
//!     loadgen lean   --url U --token T [--connections 64] [--duration 20] [--pid PID]
//!                    [--label L] [--out FILE]
//!     loadgen stats  --url FAKE
//!     loadgen report --results FILE --machine FILE --into BENCHMARKS.md [--quick]
//!
//! `run` posts events (mostly product views, some add-to-cart, a few purchases with
//! three line items) over keep-alive connections, as fast as it can (`--rate 0`) or at
//! a fixed rate (open loop: latency counts from the scheduled send time, so a slow
//! server cannot hide its queueing). It measures ingest latency per request
//! (p50/p90/p99/max) and events/s; with `--fake`, the delivery lag of every event
//! (accepted -> received by the fake Button) and how many never arrived; with `--pid`,
//! the service's CPU seconds and peak RSS. It prints a summary and appends one JSON line
//! to `--out`. Several replicas: `--url` lists each (connections take them in turn) and
//! `--pid` each one's process (CPU adds up; peak RSS is the largest replica's).
//! `--spread` posts each request to one integration's own ingest path, taking the ids
//! listed in the file in turn. `run` and `lean` also report the load generator's own CPU.
//!
//! `lean` is the yardstick for `run` itself: the leanest client (see [`lean`]).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use http1::{Conn, Endpoint};

mod http1;
mod report;
mod report_cost;

#[derive(Clone, Debug)]
struct Options {
    url: String,
    token: String,
    admin_token: String,
    api_key: String,
    application_id: String,
    id: String,
    path: Option<String>,
    batch: usize,
    rate: f64,
    duration: Duration,
    connections: usize,
    mix: String,
    fake: Option<String>,
    drain: Duration,
    pids: Vec<u32>,
    label: String,
    out: Option<String>,
    max_events: u64,
    results: String,
    machine: String,
    into: String,
    quick: bool,
    spread: Option<String>,
    count: usize,
}

fn parse(args: &[String]) -> Options {
    let mut o = Options {
        url: "http://127.0.0.1:8084".into(),
        token: String::new(),
        admin_token: String::new(),
        api_key: "sk-bench".into(),
        application_id: "app-bench1".into(),
        id: String::new(),
        path: None,
        batch: 1,
        rate: 0.0,
        duration: Duration::from_secs(20),
        connections: 64,
        mix: "realistic".into(),
        fake: None,
        drain: Duration::from_secs(60),
        pids: Vec::new(),
        label: String::new(),
        out: None,
        max_events: u64::MAX,
        results: String::new(),
        machine: String::new(),
        into: String::new(),
        quick: false,
        spread: None,
        count: 1,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .unwrap_or_else(|| fail(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--url" => o.url = value(),
            "--token" => o.token = value(),
            "--admin-token" => o.admin_token = value(),
            "--api-key" => o.api_key = value(),
            "--application-id" => o.application_id = value(),
            "--id" => o.id = value(),
            "--path" => o.path = Some(value()),
            "--batch" => o.batch = number(&value()) as usize,
            "--rate" => o.rate = number(&value()),
            "--duration" => o.duration = Duration::from_secs_f64(number(&value())),
            "--connections" => o.connections = number(&value()) as usize,
            "--mix" => o.mix = value(),
            "--fake" => o.fake = Some(value()),
            "--drain" => o.drain = Duration::from_secs_f64(number(&value())),
            "--pid" => {
                o.pids = value()
                    .split(',')
                    .map(|p| number(p.trim()) as u32)
                    .collect()
            }
            "--label" => o.label = value(),
            "--out" => o.out = Some(value()),
            "--max-events" => o.max_events = number(&value()) as u64,
            "--results" => o.results = value(),
            "--machine" => o.machine = value(),
            "--into" => o.into = value(),
            "--quick" => o.quick = true,
            "--spread" => o.spread = Some(value()),
            "--count" => o.count = number(&value()) as usize,
            other => fail(&format!("unknown argument {other}")),
        }
    }
    o
}

fn number(s: &str) -> f64 {
    s.parse()
        .unwrap_or_else(|_| fail(&format!("{s:?} is not a number")))
}

fn fail(message: &str) -> ! {
    eprintln!("loadgen: {message}");
    std::process::exit(2);
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(command) = args.get(1).cloned() else {
        fail("usage: loadgen setup|pause|resume|run ...")
    };
    let options = parse(&args[2..]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async move {
        match command.as_str() {
            "setup" => setup(&options).await,
            "pause" | "resume" => lane(&options, &command).await,
            "run" => run(options).await,
            "lean" => lean(options).await,
            "stats" => stats(&options).await,
            "report" => report::write(
                &options.results,
                &options.machine,
                &options.into,
                options.quick,
            ),
            other => fail(&format!("unknown command {other}")),
        }
    });
}

/// Installs Button `--count` times (1 by default) and prints each integration's id.
/// An admin rate limit's `429` is waited out.
async fn setup(o: &Options) {
    let client = reqwest::Client::new();
    for k in 0..o.count {
        let name = if o.count == 1 {
            "Button (bench)".to_owned()
        } else {
            format!("Button (bench {k})")
        };
        let body = json!({"name": name, "variant": "default", "delivery_mode": "server_side",
            "config": {"application_id": o.application_id, "api_key": o.api_key}});
        loop {
            let response = client
                .post(format!(
                    "{}/v1/admin/integration-catalog/button/install",
                    o.url
                ))
                .bearer_auth(&o.admin_token)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap_or_else(|e| fail(&format!("install: {e}")));
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if status.as_u16() == 429 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            if status.as_u16() != 201 {
                fail(&format!("install answered {status}: {text}"));
            }
            let v: Value = serde_json::from_str(&text).unwrap_or_default();
            println!("{}", v["id"].as_str().unwrap_or_default());
            break;
        }
    }
}

/// Prints the fake Button's counters (`GET /__control/stats`).
async fn stats(o: &Options) {
    let text = reqwest::Client::new()
        .get(format!("{}/__control/stats", o.url))
        .send()
        .await
        .unwrap_or_else(|e| fail(&format!("stats: {e}")))
        .text()
        .await
        .unwrap_or_default();
    println!("{text}");
}

async fn lane(o: &Options, what: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/admin/integrations/{}/{what}", o.url, o.id))
        .bearer_auth(&o.admin_token)
        .send()
        .await
        .unwrap_or_else(|e| fail(&format!("{what}: {e}")));
    if !response.status().is_success() {
        fail(&format!("{what} answered {}", response.status()));
    }
}

/// One Signal event; its delivered object carries `id` (order id or product id), so the
/// fake Button's arrival of it can be matched.
fn event(out: &mut String, mix: &str, run: &str, seq: u64) {
    let n = seq % 997;
    if mix == "filtered" {
        let _ = write!(
            out,
            r#"{{"type":"track","event":"purchase","messageId":"{run}-{seq}","timestamp":"2024-05-01T10:00:00Z","userId":"u{n}","properties":{{"order_id":"{run}-{seq}","revenue":10,"currency":"USD","products":[{{"product_id":"p{n}","price":10}}]}},"context":{{"consent":{{"canonical":{{"marketing":false}}}}}}}}"#
        );
        return;
    }
    let _ = match seq % 10 {
        0 => write!(
            out,
            r#"{{"type":"track","event":"purchase","messageId":"{run}-{seq}","timestamp":"2024-05-01T10:00:00Z","userId":"u{n}","traits":{{"email":"buyer{n}@example.com"}},"properties":{{"order_id":"{run}-{seq}","revenue":89.47,"tax":7.2,"shipping":4.99,"currency":"USD","btn_ref":"srctok-{n:06}","products":[{{"product_id":"A{n}","sku":"SKU-A{n}","name":"Blue shirt","price":19.99,"quantity":2,"category":"Apparel"}},{{"product_id":"B{n}","sku":"SKU-B{n}","name":"Socks","price":9.99,"quantity":3,"category":"Accessories"}},{{"product_id":"C{n}","sku":"SKU-C{n}","name":"Cap","price":19.52,"quantity":1,"category":"Hats"}}]}},"context":{{"page":{{"url":"https://shop.example/p/{n}?utm_source=partner&btn_ref=srctok-{n:06}"}},"userAgent":"Mozilla/5.0 (bench)","ip":"203.0.113.7","locale":"en-US"}}}}"#
        ),
        1 | 2 => write!(
            out,
            r#"{{"type":"track","event":"add_to_cart","messageId":"{run}-{seq}","timestamp":"2024-05-01T10:00:00Z","anonymousId":"anon-{n}","properties":{{"currency":"USD","products":[{{"product_id":"{run}-{seq}","sku":"SKU-{n}","name":"Trail shoes","price":89.5,"quantity":1,"category":"Shoes","url":"https://shop.example/p/{n}"}}]}},"context":{{"page":{{"url":"https://shop.example/p/{n}?utm_source=partner&btn_ref=srctok-{n:06}"}},"userAgent":"Mozilla/5.0 (bench)","ip":"203.0.113.7","locale":"en-US"}}}}"#
        ),
        _ => write!(
            out,
            r#"{{"type":"track","event":"product_view","messageId":"{run}-{seq}","timestamp":"2024-05-01T10:00:00Z","anonymousId":"anon-{n}","properties":{{"product_id":"{run}-{seq}","name":"Lamp {n}","price":45,"currency":"USD","url":"https://shop.example/p/{n}","category":"Home"}},"context":{{"page":{{"url":"https://shop.example/p/{n}?utm_source=partner&btn_ref=srctok-{n:06}"}},"userAgent":"Mozilla/5.0 (bench)","ip":"203.0.113.7","locale":"en-US"}}}}"#
        ),
    };
}

struct Shared {
    options: Options,
    run: String,
    next: AtomicU64,
    /// One per replica; connection `i` posts to `endpoints[i % len]`.
    endpoints: Vec<Endpoint>,
    /// The request heads up to the body's length, one per path: with `--spread`, one
    /// per integration, taken in turn by request; else the one path.
    heads: Vec<Vec<u8>>,
    /// Requests sent, to take the heads in turn.
    requests: AtomicU64,
    ok: AtomicU64,
    events: AtomicU64,
    bad_status: AtomicU64,
    transport_errors: AtomicU64,
    track_ids: bool,
}

/// What one sender measured: request latencies (µs, of all answers and of the 2xx
/// ones), and which sequence numbers were accepted when (`(first, count, at_us)`).
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    accepted_latencies: Vec<u32>,
    accepted: Vec<(u64, u32, u64)>,
}

/// One sender: a connection to `endpoint` (made again after a transport error or a
/// `connection: close`), its body buffer, and what it measured.
struct Sender {
    endpoint: usize,
    conn: Option<Conn>,
    body: String,
    tally: Tally,
}

impl Sender {
    fn new(endpoint: usize) -> Sender {
        Sender {
            endpoint,
            conn: None,
            body: String::with_capacity(64 * 1024),
            tally: Tally::default(),
        }
    }

    /// Sends one request of `batch` events; records its latency from `since`.
    async fn send(&mut self, shared: &Shared, since: Instant) {
        let batch = shared.options.batch;
        let first = shared.next.fetch_add(batch as u64, Ordering::Relaxed);
        self.body.clear();
        if batch > 1 {
            self.body.push_str("{\"batch\":[");
        }
        for s in first..first + batch as u64 {
            if s > first {
                self.body.push(',');
            }
            event(&mut self.body, &shared.options.mix, &shared.run, s);
        }
        if batch > 1 {
            self.body.push_str("]}");
        }
        let result = self.post(shared).await;
        let latency = since.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        match result {
            Ok((status, accepted)) => {
                self.tally.latencies.push(latency);
                if (200..300).contains(&status) {
                    self.tally.accepted_latencies.push(latency);
                    shared.ok.fetch_add(1, Ordering::Relaxed);
                    shared
                        .events
                        .fetch_add(accepted.unwrap_or(batch as u64), Ordering::Relaxed);
                    if shared.track_ids {
                        self.tally.accepted.push((first, batch as u32, now_us()));
                    }
                }
            }
            Err(e) => {
                self.conn = None;
                shared.transport_errors.fetch_add(1, Ordering::Relaxed);
                if shared.transport_errors.load(Ordering::Relaxed) <= 3 {
                    eprintln!("loadgen: transport error: {e}");
                }
            }
        }
    }

    /// Posts the body; the answer's status and its `accepted` count, if it says one.
    async fn post(&mut self, shared: &Shared) -> std::io::Result<(u16, Option<u64>)> {
        if self.conn.as_ref().is_none_or(|c| c.closed) {
            let addr = &shared.endpoints[self.endpoint].addr;
            self.conn = Some(Conn::connect(addr).await?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let head = if shared.heads.len() == 1 {
            0
        } else {
            shared.requests.fetch_add(1, Ordering::Relaxed) as usize % shared.heads.len()
        };
        let answer = conn.post(&shared.heads[head], self.body.as_bytes()).await?;
        let body = conn.body(&answer);
        if !(200..300).contains(&answer.status) {
            if shared.bad_status.fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!(
                    "loadgen: {}: {}",
                    answer.status,
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                );
            }
            return Ok((answer.status, None));
        }
        Ok((answer.status, accepted_count(body)))
    }
}

/// The `accepted` count of an ingest answer.
fn accepted_count(body: &[u8]) -> Option<u64> {
    let key = b"\"accepted\":";
    let at = body.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// CPU seconds of all `pids` together, and the largest peak RSS (MB) among them.
fn procs_cpu_and_peak(pids: &[u32]) -> Option<(f64, f64)> {
    if pids.is_empty() {
        return None;
    }
    let mut total = (0.0, 0.0f64);
    for &pid in pids {
        let (cpu, peak) = proc_cpu_and_peak(pid)?;
        total = (total.0 + cpu, total.1.max(peak));
    }
    Some(total)
}

fn proc_cpu_and_peak(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks / 100.0, hwm_kb / 1024.0))
}

async fn run(o: Options) {
    let path = o.path.clone().unwrap_or_else(|| {
        if o.batch > 1 {
            "/v1/events/batch".into()
        } else {
            "/v1/events".into()
        }
    });
    let endpoints: Vec<Endpoint> = o
        .url
        .split(',')
        .map(|u| Endpoint::parse(&format!("{}{}", u.trim(), path)).unwrap_or_else(|e| fail(&e)))
        .collect();
    // `--spread FILE`: integration ids, one per line; requests take them in turn, each
    // posted to that integration's own ingest path.
    let heads = match &o.spread {
        None => vec![endpoints[0].head(&o.token)],
        Some(file) => {
            let ids =
                std::fs::read_to_string(file).unwrap_or_else(|e| fail(&format!("{file}: {e}")));
            let suffix = if o.batch > 1 {
                "/events/batch"
            } else {
                "/events"
            };
            let heads: Vec<Vec<u8>> = ids
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|id| {
                    Endpoint {
                        addr: endpoints[0].addr.clone(),
                        path: format!("/v1/integrations/{}{suffix}", id.trim()),
                    }
                    .head(&o.token)
                })
                .collect();
            if heads.is_empty() {
                fail(&format!("{file} names no integration"));
            }
            heads
        }
    };
    let spread = heads.len();
    let shared = Arc::new(Shared {
        run: format!("lg{:08x}", now_us() as u32 ^ std::process::id()),
        next: AtomicU64::new(0),
        heads,
        requests: AtomicU64::new(0),
        endpoints,
        ok: AtomicU64::new(0),
        events: AtomicU64::new(0),
        bad_status: AtomicU64::new(0),
        transport_errors: AtomicU64::new(0),
        track_ids: o.fake.is_some(),
        options: o.clone(),
    });
    let before = procs_cpu_and_peak(&o.pids);
    let own_before = proc_cpu_and_peak(std::process::id());
    let started = Instant::now();
    let deadline = started + o.duration;
    let mut workers = Vec::new();
    if o.rate <= 0.0 {
        for i in 0..o.connections {
            let shared = shared.clone();
            workers.push(tokio::spawn(async move {
                let mut sender = Sender::new(i % shared.endpoints.len());
                while Instant::now() < deadline
                    && shared.next.load(Ordering::Relaxed) < shared.options.max_events
                {
                    sender.send(&shared, Instant::now()).await;
                }
                sender.tally
            }));
        }
    } else {
        // Open loop: request k is due at k / rate; a pool of senders takes them in turn.
        let per_second = o.rate / o.batch as f64;
        let (tx, rx) = tokio::sync::mpsc::channel::<Instant>(1 << 16);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..o.connections {
            let (shared, rx) = (shared.clone(), rx.clone());
            workers.push(tokio::spawn(async move {
                let mut sender = Sender::new(i % shared.endpoints.len());
                loop {
                    let due = { rx.lock().await.recv().await };
                    let Some(due) = due else { break };
                    sender.send(&shared, due).await;
                }
                sender.tally
            }));
        }
        let total = (per_second * o.duration.as_secs_f64()).round() as u64;
        for k in 0..total {
            let due = started + Duration::from_secs_f64(k as f64 / per_second);
            tokio::time::sleep_until(due.into()).await;
            if tx.send(due).await.is_err() {
                break;
            }
        }
    }
    let mut tally = Tally::default();
    for w in workers {
        if let Ok(t) = w.await {
            tally.latencies.extend(t.latencies);
            tally.accepted_latencies.extend(t.accepted_latencies);
            tally.accepted.extend(t.accepted);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after_ingest = procs_cpu_and_peak(&o.pids);
    let own_after = proc_cpu_and_peak(std::process::id());
    let Tally {
        mut latencies,
        mut accepted_latencies,
        accepted,
    } = tally;
    latencies.sort_unstable();
    accepted_latencies.sort_unstable();
    let events = shared.events.load(Ordering::Relaxed);
    let requests = latencies.len() as u64;
    let mut result = json!({
        "label": o.label,
        "path": path,
        "batch": o.batch,
        "rate_target": o.rate,
        "connections": o.connections,
        "replicas": shared.endpoints.len(),
        "integrations": spread,
        "duration_s": elapsed,
        "requests": requests,
        "requests_per_s": requests as f64 / elapsed,
        "events_accepted": events,
        "events_per_s": events as f64 / elapsed,
        "non_2xx": shared.bad_status.load(Ordering::Relaxed),
        "transport_errors": shared.transport_errors.load(Ordering::Relaxed),
        "latency_ms": {"p50": percentile(&latencies, 0.50), "p90": percentile(&latencies, 0.90),
                       "p99": percentile(&latencies, 0.99), "max": percentile(&latencies, 1.0)},
        "latency_accepted_ms": {"p50": percentile(&accepted_latencies, 0.50),
                                "p99": percentile(&accepted_latencies, 0.99),
                                "max": percentile(&accepted_latencies, 1.0)},
    });
    if let (Some((cpu0, _)), Some((cpu1, _))) = (own_before, own_after) {
        result["loadgen"] = json!({"cpu_s": cpu1 - cpu0, "cpu_cores": (cpu1 - cpu0) / elapsed});
    }
    if let Some(fake) = &o.fake {
        result["delivery"] = delivery_lag(fake, &shared, &accepted, o.drain).await;
    }
    let after = procs_cpu_and_peak(&o.pids);
    if let (Some((cpu0, _)), Some((cpu1, _)), Some((cpu2, peak))) = (before, after_ingest, after) {
        result["service"] = json!({"cpu_s_during_load": cpu1 - cpu0, "cpu_s_total": cpu2 - cpu0,
                                   "cpu_cores_during_load": (cpu1 - cpu0) / elapsed, "peak_rss_mb": peak});
    }
    emit(&o, &result);
}

/// Prints `result` and appends it to `--out`.
fn emit(o: &Options, result: &Value) {
    eprintln!("{}", serde_json::to_string_pretty(result).unwrap());
    if let Some(out) = &o.out {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .expect("the results file opens");
        writeln!(f, "{result}").expect("the results file is written");
    }
}

/// `loadgen lean`: the leanest client, the yardstick for the load generator itself.
/// Each connection posts one pre-serialised single event with its message id patched
/// in place (a fixed-width counter), reads the answer and counts it: no event to build,
/// no latency to record. `run` against the same server must come within 10% of it.
async fn lean(o: Options) {
    let endpoint = Endpoint::parse(&format!(
        "{}{}",
        o.url,
        o.path.as_deref().unwrap_or("/v1/events")
    ))
    .unwrap_or_else(|e| fail(&e));
    let head = Arc::new(endpoint.head(&o.token));
    let template = r#"{"type":"track","event":"product_view","messageId":"lean-0000000000000000","timestamp":"2024-05-01T10:00:00Z","anonymousId":"anon-1","properties":{"product_id":"p1","name":"Lamp","price":45,"currency":"USD"}}"#;
    let digits_at = template
        .find("0000000000000000")
        .expect("the template has a counter");
    let done = Arc::new(AtomicU64::new(0));
    let own_before = proc_cpu_and_peak(std::process::id());
    let before = procs_cpu_and_peak(&o.pids);
    let started = Instant::now();
    let deadline = started + o.duration;
    let mut workers = Vec::new();
    for i in 0..o.connections {
        let (head, done, addr) = (head.clone(), done.clone(), endpoint.addr.clone());
        workers.push(tokio::spawn(async move {
            let mut body = template.as_bytes().to_vec();
            let mut counter = (i as u64) << 40;
            let mut conn = Conn::connect(&addr).await.ok();
            while Instant::now() < deadline {
                let Some(c) = conn.as_mut().filter(|c| !c.closed) else {
                    conn = Conn::connect(&addr).await.ok();
                    continue;
                };
                counter += 1;
                let mut n = counter;
                for d in body[digits_at..digits_at + 16].iter_mut().rev() {
                    *d = b'0' + (n % 10) as u8;
                    n /= 10;
                }
                match c.post(&head, &body).await {
                    Ok(_) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => conn = None,
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = done.load(Ordering::Relaxed);
    let mut result = json!({
        "label": o.label,
        "client": "lean",
        "connections": o.connections,
        "duration_s": elapsed,
        "requests": requests,
        "requests_per_s": requests as f64 / elapsed,
    });
    if let (Some((cpu0, _)), Some((cpu1, _))) = (own_before, proc_cpu_and_peak(std::process::id()))
    {
        result["loadgen"] = json!({"cpu_s": cpu1 - cpu0, "cpu_cores": (cpu1 - cpu0) / elapsed});
    }
    if let (Some((cpu0, _)), Some((cpu1, peak))) = (before, procs_cpu_and_peak(&o.pids)) {
        result["service"] = json!({"cpu_s_during_load": cpu1 - cpu0,
                                   "cpu_cores_during_load": (cpu1 - cpu0) / elapsed, "peak_rss_mb": peak});
    }
    emit(&o, &result);
}

/// Waits until the fake Button received every accepted event (or the drain time ran
/// out), then matches arrivals to acceptances.
async fn delivery_lag(
    fake: &str,
    shared: &Shared,
    accepted: &[(u64, u32, u64)],
    drain: Duration,
) -> Value {
    // When each sequence number was accepted (0: it was not).
    let end = accepted
        .iter()
        .map(|&(first, n, _)| first + u64::from(n))
        .max()
        .unwrap_or(0);
    let mut accepted_at = vec![0u64; end as usize];
    for &(first, n, at) in accepted {
        accepted_at[first as usize..(first + u64::from(n)) as usize].fill(at);
    }
    let expected = accepted_at.iter().filter(|&&at| at != 0).count();
    let prefix = format!("{}-", shared.run);
    let seq_of = |id: &str| -> Option<usize> {
        let seq: usize = id.strip_prefix(&prefix)?.parse().ok()?;
        (accepted_at.get(seq).copied().unwrap_or(0) != 0).then_some(seq)
    };
    let client = reqwest::Client::new();
    let until = Instant::now() + drain;
    let mut matched = Vec::with_capacity(expected);
    let mut seen = vec![false; end as usize];
    loop {
        let arrivals_text = match client
            .get(format!("{fake}/__control/arrivals"))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        matched.clear();
        seen.fill(false);
        let (mut arrivals, mut unique) = (0usize, 0usize);
        let mut first_arrival = u64::MAX;
        let mut last_arrival = 0;
        for line in arrivals_text.lines() {
            let Some((id, at)) = line.split_once('\t') else {
                continue;
            };
            let (Some(seq), Ok(at)) = (seq_of(id), at.parse::<u64>()) else {
                continue;
            };
            arrivals += 1;
            matched.push(at.saturating_sub(accepted_at[seq]) as u32);
            first_arrival = first_arrival.min(at);
            last_arrival = last_arrival.max(at);
            if !seen[seq] {
                seen[seq] = true;
                unique += 1;
            }
        }
        if unique >= expected || Instant::now() >= until {
            matched.sort_unstable();
            let span_s = (last_arrival.saturating_sub(first_arrival)) as f64 / 1e6;
            return json!({
                "expected": expected,
                "arrived": unique,
                "lost": expected - unique.min(expected),
                "duplicates": arrivals - unique,
                "delivered_per_s": if span_s > 0.0 { arrivals as f64 / span_s } else { 0.0 },
                "lag_ms": {"p50": percentile(&matched, 0.50), "p90": percentile(&matched, 0.90),
                           "p99": percentile(&matched, 0.99), "max": percentile(&matched, 1.0)},
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
