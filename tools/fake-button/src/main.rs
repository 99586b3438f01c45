//! `fake-button`: the fake Button server as a process, for benchmarks and local trials.
//!
//!     fake-button [--listen 127.0.0.1:9099] [--api-key KEY]... [--latency-ms N]
//!                 [--status-mix 200:98,503:2] [--retry-after SECONDS]
//!                 [--record] [--record-arrivals]
//!
//! Orders: `POST /v1/order`; activity: `POST /app/{application_id}/v1/app/activity`
//! (or `/v1/app/activity` with the application in the host name). Control:
//! `GET /__control/stats`, `GET /__control/arrivals`, `POST /__control/reset`.

use std::time::Duration;

use fake_button::{Config, FakeButton};

fn main() {
    let mut listen = "127.0.0.1:9099".to_owned();
    let mut config = Config {
        api_keys: Vec::new(),
        record: false,
        ..Config::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--listen" => listen = value(),
            "--api-key" => config.api_keys.push(value()),
            "--latency-ms" => {
                config.latency = Duration::from_millis(
                    value()
                        .parse()
                        .unwrap_or_else(|_| usage("--latency-ms takes a number")),
                )
            }
            "--status-mix" => {
                config.status_mix = value()
                    .split(',')
                    .map(|pair| {
                        let (s, w) = pair
                            .split_once(':')
                            .unwrap_or_else(|| usage("--status-mix takes status:weight,..."));
                        (
                            s.parse().unwrap_or_else(|_| usage("bad status")),
                            w.parse().unwrap_or_else(|_| usage("bad weight")),
                        )
                    })
                    .collect()
            }
            "--retry-after" => config.retry_after = Some(value()),
            "--record" => config.record = true,
            "--record-arrivals" => config.record_arrivals = true,
            "--help" | "-h" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if config.api_keys.is_empty() {
        config.api_keys.push("sk-test-valid".into());
    }
    let addr = listen
        .parse()
        .unwrap_or_else(|_| usage("--listen takes host:port"));
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async move {
        let fake = FakeButton::start_on(addr, config).await;
        eprintln!("fake-button listening on http://{}", fake.addr());
        let _ = tokio::signal::ctrl_c().await;
        let stats = fake.stats();
        eprintln!(
            "fake-button: {} requests, {} ok, {} refused, peak {} in flight",
            stats.total, stats.ok, stats.rejected, stats.peak_in_flight
        );
    });
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("fake-button: {problem}");
    }
    eprintln!(
        "usage: fake-button [--listen HOST:PORT] [--api-key KEY]... [--latency-ms N] [--status-mix S:W,...] [--retry-after S] [--record] [--record-arrivals]"
    );
    std::process::exit(2);
}
