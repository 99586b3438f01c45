//! `loadgen`: drives the Button delivery service (or the bare baseline) with Signal
//! events and measures it.
//!
//!     loadgen setup  --url U --admin-token T --api-key K [--application-id A]
//!     loadgen pause  --url U --admin-token T --id INT
//!     loadgen resume --url U --admin-token T --id INT
//!     loadgen run    --url U[,U2...] --token T [--batch 1] [--rate 0] [--duration 20]
//!                    [--connections 64] [--mix realistic|filtered] [--path P]
//!                    [--max-events N] [--fake URL] [--drain 60] [--pid PID[,PID2...]]
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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::Mutex;

mod report;

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

async fn setup(o: &Options) {
    let client = reqwest::Client::new();
    let body = json!({"name": "Button (bench)", "variant": "default", "delivery_mode": "server_side",
        "config": {"application_id": o.application_id, "api_key": o.api_key}});
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
    if status.as_u16() != 201 {
        fail(&format!("install answered {status}: {text}"));
    }
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    println!("{}", v["id"].as_str().unwrap_or_default());
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
fn event(mix: &str, run: &str, seq: u64) -> String {
    let id = format!("{run}-{seq}");
    let n = seq % 997;
    let context = format!(
        r#"{{"page":{{"url":"https://shop.example/p/{n}?utm_source=partner&btn_ref=srctok-{n:06}"}},"userAgent":"Mozilla/5.0 (bench)","ip":"203.0.113.7","locale":"en-US"}}"#
    );
    if mix == "filtered" {
        return format!(
            r#"{{"type":"track","event":"purchase","messageId":"{id}","timestamp":"2024-05-01T10:00:00Z","userId":"u{n}","properties":{{"order_id":"{id}","revenue":10,"currency":"USD","products":[{{"product_id":"p{n}","price":10}}]}},"context":{{"consent":{{"canonical":{{"marketing":false}}}}}}}}"#
        );
    }
    match seq % 10 {
        0 => format!(
            r#"{{"type":"track","event":"purchase","messageId":"{id}","timestamp":"2024-05-01T10:00:00Z","userId":"u{n}","traits":{{"email":"buyer{n}@example.com"}},"properties":{{"order_id":"{id}","revenue":89.47,"tax":7.2,"shipping":4.99,"currency":"USD","btn_ref":"srctok-{n:06}","products":[{{"product_id":"A{n}","sku":"SKU-A{n}","name":"Blue shirt","price":19.99,"quantity":2,"category":"Apparel"}},{{"product_id":"B{n}","sku":"SKU-B{n}","name":"Socks","price":9.99,"quantity":3,"category":"Accessories"}},{{"product_id":"C{n}","sku":"SKU-C{n}","name":"Cap","price":19.52,"quantity":1,"category":"Hats"}}]}},"context":{context}}}"#
        ),
        1 | 2 => format!(
            r#"{{"type":"track","event":"add_to_cart","messageId":"{id}","timestamp":"2024-05-01T10:00:00Z","anonymousId":"anon-{n}","properties":{{"currency":"USD","products":[{{"product_id":"{id}","sku":"SKU-{n}","name":"Trail shoes","price":89.5,"quantity":1,"category":"Shoes","url":"https://shop.example/p/{n}"}}]}},"context":{context}}}"#
        ),
        _ => format!(
            r#"{{"type":"track","event":"product_view","messageId":"{id}","timestamp":"2024-05-01T10:00:00Z","anonymousId":"anon-{n}","properties":{{"product_id":"{id}","name":"Lamp {n}","price":45,"currency":"USD","url":"https://shop.example/p/{n}","category":"Home"}},"context":{context}}}"#
        ),
    }
}

struct Shared {
    options: Options,
    run: String,
    next: AtomicU64,
    client: reqwest::Client,
    /// One per replica; connection `i` posts to `endpoints[i % len]`.
    endpoints: Vec<String>,
    latencies: Mutex<Vec<u32>>,
    /// Of the 2xx answers only.
    accepted_latencies: Mutex<Vec<u32>>,
    accepted_at: Mutex<HashMap<String, u64>>,
    ok: AtomicU64,
    events: AtomicU64,
    bad_status: AtomicU64,
    transport_errors: AtomicU64,
    track_ids: bool,
}

/// Sends one request of `batch` events; records its latency from `since`.
async fn send(shared: &Shared, endpoint: &str, since: Instant) {
    let batch = shared.options.batch;
    let first = shared.next.fetch_add(batch as u64, Ordering::Relaxed);
    let events: Vec<String> = (first..first + batch as u64)
        .map(|s| event(&shared.options.mix, &shared.run, s))
        .collect();
    let body = if batch == 1 {
        events[0].clone()
    } else {
        format!("{{\"batch\":[{}]}}", events.join(","))
    };
    let result = shared
        .client
        .post(endpoint)
        .bearer_auth(&shared.options.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match result {
        Ok(response) => {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let latency = since.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            shared.latencies.lock().await.push(latency);
            if status.is_success() {
                shared.accepted_latencies.lock().await.push(latency);
                let accepted = text
                    .split("\"accepted\":")
                    .nth(1)
                    .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(batch as u64);
                shared.ok.fetch_add(1, Ordering::Relaxed);
                shared.events.fetch_add(accepted, Ordering::Relaxed);
                if shared.track_ids {
                    let at = now_us();
                    let mut map = shared.accepted_at.lock().await;
                    for s in first..first + batch as u64 {
                        map.insert(format!("{}-{s}", shared.run), at);
                    }
                }
            } else {
                shared.bad_status.fetch_add(1, Ordering::Relaxed);
                if shared.bad_status.load(Ordering::Relaxed) <= 3 {
                    eprintln!(
                        "loadgen: {status}: {}",
                        text.chars().take(300).collect::<String>()
                    );
                }
            }
        }
        Err(e) => {
            shared.transport_errors.fetch_add(1, Ordering::Relaxed);
            if shared.transport_errors.load(Ordering::Relaxed) <= 3 {
                eprintln!("loadgen: transport error: {e}");
            }
        }
    }
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
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(o.connections)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client");
    let shared = Arc::new(Shared {
        run: format!("lg{:08x}", now_us() as u32 ^ std::process::id()),
        next: AtomicU64::new(0),
        endpoints: o
            .url
            .split(',')
            .map(|u| format!("{}{}", u.trim(), path))
            .collect(),
        client,
        latencies: Mutex::new(Vec::with_capacity(1 << 20)),
        accepted_latencies: Mutex::new(Vec::with_capacity(1 << 20)),
        accepted_at: Mutex::new(HashMap::new()),
        ok: AtomicU64::new(0),
        events: AtomicU64::new(0),
        bad_status: AtomicU64::new(0),
        transport_errors: AtomicU64::new(0),
        track_ids: o.fake.is_some(),
        options: o.clone(),
    });
    let before = procs_cpu_and_peak(&o.pids);
    let started = Instant::now();
    let deadline = started + o.duration;
    if o.rate <= 0.0 {
        let mut workers = Vec::new();
        for i in 0..o.connections {
            let shared = shared.clone();
            workers.push(tokio::spawn(async move {
                let endpoint = &shared.endpoints[i % shared.endpoints.len()];
                while Instant::now() < deadline
                    && shared.next.load(Ordering::Relaxed) < shared.options.max_events
                {
                    send(&shared, endpoint, Instant::now()).await;
                }
            }));
        }
        for w in workers {
            let _ = w.await;
        }
    } else {
        // Open loop: request k is due at k / rate; a pool of senders takes them in turn.
        let per_second = o.rate / o.batch as f64;
        let (tx, rx) = tokio::sync::mpsc::channel::<Instant>(1 << 16);
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::new();
        for i in 0..o.connections {
            let (shared, rx) = (shared.clone(), rx.clone());
            workers.push(tokio::spawn(async move {
                let endpoint = &shared.endpoints[i % shared.endpoints.len()];
                loop {
                    let due = { rx.lock().await.recv().await };
                    let Some(due) = due else { break };
                    send(&shared, endpoint, due).await;
                }
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
        drop(tx);
        for w in workers {
            let _ = w.await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after_ingest = procs_cpu_and_peak(&o.pids);
    let mut latencies = std::mem::take(&mut *shared.latencies.lock().await);
    latencies.sort_unstable();
    let mut accepted_latencies = std::mem::take(&mut *shared.accepted_latencies.lock().await);
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
    if let Some(fake) = &o.fake {
        let expected = shared.accepted_at.lock().await.len();
        let lag = delivery_lag(fake, &shared, expected, o.drain).await;
        result["delivery"] = lag;
    }
    let after = procs_cpu_and_peak(&o.pids);
    if let (Some((cpu0, _)), Some((cpu1, _)), Some((cpu2, peak))) = (before, after_ingest, after) {
        result["service"] = json!({"cpu_s_during_load": cpu1 - cpu0, "cpu_s_total": cpu2 - cpu0,
                                   "cpu_cores_during_load": (cpu1 - cpu0) / elapsed, "peak_rss_mb": peak});
    }
    eprintln!("{}", serde_json::to_string_pretty(&result).unwrap());
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

/// Waits until the fake Button received every accepted event (or the drain time ran
/// out), then matches arrivals to acceptances.
async fn delivery_lag(fake: &str, shared: &Shared, expected: usize, drain: Duration) -> Value {
    let client = reqwest::Client::new();
    let until = Instant::now() + drain;
    let mut arrivals_text = String::new();
    let mut matched = Vec::with_capacity(expected);
    let accepted = shared.accepted_at.lock().await;
    loop {
        if let Ok(r) = client
            .get(format!("{fake}/__control/arrivals"))
            .send()
            .await
        {
            arrivals_text = r.text().await.unwrap_or_default();
        }
        matched.clear();
        let mut first_arrival = u64::MAX;
        let mut last_arrival = 0;
        for line in arrivals_text.lines() {
            let Some((id, at)) = line.split_once('\t') else {
                continue;
            };
            if let (Some(accepted_at), Ok(at)) = (accepted.get(id), at.parse::<u64>()) {
                matched.push(at.saturating_sub(*accepted_at) as u32);
                first_arrival = first_arrival.min(at);
                last_arrival = last_arrival.max(at);
            }
        }
        if matched.len() >= expected || Instant::now() >= until {
            let mut unique_ids: Vec<&str> = arrivals_text
                .lines()
                .filter_map(|l| l.split('\t').next())
                .filter(|id| accepted.contains_key(*id))
                .collect();
            let arrivals = unique_ids.len();
            unique_ids.sort_unstable();
            unique_ids.dedup();
            matched.sort_unstable();
            let span_s = (last_arrival.saturating_sub(first_arrival)) as f64 / 1e6;
            return json!({
                "expected": expected,
                "arrived": unique_ids.len(),
                "lost": expected - unique_ids.len().min(expected),
                "duplicates": arrivals - unique_ids.len(),
                "delivered_per_s": if span_s > 0.0 { arrivals as f64 / span_s } else { 0.0 },
                "lag_ms": {"p50": percentile(&matched, 0.50), "p90": percentile(&matched, 0.90),
                           "p99": percentile(&matched, 0.99), "max": percentile(&matched, 1.0)},
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
