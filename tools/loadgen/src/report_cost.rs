//! The parts of BENCHMARKS.md that compare: the limit and the load generator against
//! the leanest client, cost as the work grows (CPU per event by rate, ingest by
//! connections, many integrations), each curve drawn as an SVG, and the targets as
//! ratios to the limit measured in the same run.

use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

use crate::report::{CONNECTIONS, INTEGRATIONS, RATES, f};

type Get<'a> = &'a dyn Fn(&str) -> Value;
/// A target's cell for one store: what was measured, and whether it met the target
/// (`None`: not measured here).
type Cell = (String, Option<bool>);

const STORES: [(&str, &str); 2] = [("", "SQLite"), ("pg-", "PostgreSQL")];

pub fn sections(
    s: &mut String,
    get: Get,
    labels: &[&str],
    limit: f64,
    limit_batch: f64,
    plots: &Path,
) {
    limit_section(s, get);
    cost_section(s, get, plots);
    targets(s, get, labels, limit, limit_batch);
}

/// Service CPU per event over the whole run (ingest and delivery), in ms.
fn cpu_ms_per_event(r: &Value) -> Option<f64> {
    let events = f(&r["events_accepted"]);
    let cpu = f(&r["service"]["cpu_s_total"]);
    (events > 0.0 && cpu > 0.0).then(|| 1000.0 * cpu / events)
}

fn limit_section(s: &mut String, get: Get) {
    let lean = get("bare-lean");
    let run = get("bare-single");
    if lean.is_null() || run.is_null() {
        return;
    }
    let _ = writeln!(s, "\n### The limit, and the load generator\n");
    let _ = writeln!(
        s,
        "The same bare server, driven by the load generator (`loadgen run`: varied events built per \
         request, every latency recorded) and by the leanest client (`loadgen lean`: one pre-serialised \
         event with its id patched in place, nothing recorded), 64 connections each.\n"
    );
    let _ = writeln!(
        s,
        "| client | requests/s | its own CPU (cores) | bare server's CPU (cores) |\n|---|---:|---:|---:|"
    );
    for (name, r) in [("leanest client", &lean), ("load generator", &run)] {
        let _ = writeln!(
            s,
            "| {name} | {:.0} | {:.2} | {:.2} |",
            f(&r["requests_per_s"]),
            f(&r["loadgen"]["cpu_cores"]),
            f(&r["service"]["cpu_cores_during_load"])
        );
    }
    let ratio = f(&run["requests_per_s"]) / f(&lean["requests_per_s"]).max(1.0);
    let _ = writeln!(
        s,
        "\nThe load generator reaches **{:.0}%** of the leanest client (the bar: 90%).",
        100.0 * ratio
    );
}

fn cost_section(s: &mut String, get: Get, plots: &Path) {
    let _ = writeln!(s, "\n### Cost as the work grows\n");
    // CPU per event by rate.
    let mut series = Vec::new();
    let _ = writeln!(
        s,
        "Service CPU per event, end to end (ingest, mapping, delivery to an instant fake Button, live logs), \
         single events at a fixed rate:\n"
    );
    let _ = writeln!(
        s,
        "The last column is the floor: what the bare axum server (step 1) spends on one HTTP request \
         at the same rate, doing nothing with it. An event costs at least that to accept, and about \
         as much again to deliver (one HTTP request out).\n"
    );
    let _ = writeln!(
        s,
        "| events/s | SQLite: ms per event (cores) | PostgreSQL: ms per event (cores) | bare axum: ms per request |\n|---:|---:|---:|---:|"
    );
    for r in RATES {
        let bare = cpu_ms_per_event(&get(&format!("bare-cost-{r}")))
            .map(|ms| format!("{ms:.3}"))
            .unwrap_or_default();
        let cell = |prefix: &str| {
            let run = get(&format!("{prefix}cost-{r}"));
            match cpu_ms_per_event(&run) {
                Some(ms) => format!(
                    "{ms:.2} ({:.2})",
                    f(&run["service"]["cpu_s_total"]) / f(&run["duration_s"]).max(1e-9)
                ),
                None => String::new(),
            }
        };
        let (a, b) = (cell(""), cell("pg-"));
        if !(a.is_empty() && b.is_empty()) {
            let _ = writeln!(s, "| {r} | {a} | {b} | {bare} |");
        }
    }
    for (prefix, store) in STORES.into_iter().chain([("bare-", "bare axum")]) {
        let points: Vec<(f64, f64)> = RATES
            .iter()
            .filter_map(|r| {
                cpu_ms_per_event(&get(&format!("{prefix}cost-{r}"))).map(|ms| (f64::from(*r), ms))
            })
            .collect();
        series.push((store, points));
    }
    plot(
        s,
        plots,
        "cpu-per-event.svg",
        "Service CPU per event against rate",
        "events/s (log)",
        "ms of CPU per event",
        &series,
    );

    // Ingest by connections.
    let _ = writeln!(
        s,
        "\nDurable ingest of single events (delivery paused) by concurrent connections:\n"
    );
    let _ = writeln!(
        s,
        "| connections | SQLite: requests/s, p99 ms | PostgreSQL: requests/s, p99 ms |\n|---:|---:|---:|"
    );
    let mut series = Vec::new();
    for c in CONNECTIONS {
        let cell = |prefix: &str| {
            let run = get(&format!("{prefix}ingest-c{c}"));
            if run.is_null() {
                return String::new();
            }
            format!(
                "{:.0}, {:.1}",
                f(&run["requests_per_s"]),
                f(&run["latency_ms"]["p99"])
            )
        };
        let (a, b) = (cell(""), cell("pg-"));
        if !(a.is_empty() && b.is_empty()) {
            let _ = writeln!(s, "| {c} | {a} | {b} |");
        }
    }
    for (prefix, store) in STORES {
        let points: Vec<(f64, f64)> = CONNECTIONS
            .iter()
            .filter_map(|c| {
                let run = get(&format!("{prefix}ingest-c{c}"));
                (!run.is_null()).then(|| (f64::from(*c), f(&run["requests_per_s"])))
            })
            .collect();
        series.push((store, points));
    }
    plot(
        s,
        plots,
        "ingest-by-connections.svg",
        "Durable ingest against connections",
        "connections (log)",
        "requests/s",
        &series,
    );

    // Many integrations.
    let _ = writeln!(
        s,
        "\nMany integrations installed, events spread over them (each request to one integration's own \
         ingest path):\n"
    );
    let _ = writeln!(
        s,
        "| store | integrations | idle: service CPU (cores) | end to end at 2,000/s: ms CPU per event, lag p99 ms, lost | ingest with delivery running: requests/s |\n|---|---:|---:|---|---:|"
    );
    for (prefix, store) in STORES {
        for n in INTEGRATIONS {
            let e2e = get(&format!("{prefix}int{n}-e2e"));
            let ingest = get(&format!("{prefix}int{n}-ingest"));
            if e2e.is_null() && ingest.is_null() {
                continue;
            }
            let idle = get(&format!("{prefix}int{n}-idle"));
            let _ = writeln!(
                s,
                "| {store} | {n} | {:.3} | {:.2}, {:.1}, {} | {:.0} |",
                f(&idle["service"]["cpu_cores_during_load"]),
                cpu_ms_per_event(&e2e).unwrap_or(0.0),
                f(&e2e["delivery"]["lag_ms"]["p99"]),
                e2e["delivery"]["lost"],
                f(&ingest["requests_per_s"])
            );
        }
    }
}

/// Writes an SVG line plot of `series` (x on a log scale) to `plots/name` and links it.
fn plot(
    s: &mut String,
    plots: &Path,
    name: &str,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) {
    let all: Vec<(f64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    if all.len() < 2 {
        return;
    }
    let (w, h, left, bottom, top, right) = (640.0, 360.0, 70.0, 50.0, 40.0, 130.0);
    let x_min = all.iter().map(|p| p.0).fold(f64::MAX, f64::min).log10();
    let x_max = all.iter().map(|p| p.0).fold(f64::MIN, f64::max).log10();
    // Five ticks of a round step (1, 2 or 5 times a power of ten) above the highest point.
    let top_value = all.iter().map(|p| p.1).fold(0.0, f64::max);
    let step = nice_step(top_value / 5.0);
    let ticks = (top_value / step).ceil().max(1.0) as u32;
    let y_max = step * f64::from(ticks);
    let x = |v: f64| left + (v.log10() - x_min) / (x_max - x_min).max(1e-9) * (w - left - right);
    let y = |v: f64| h - bottom - v / y_max.max(1e-9) * (h - bottom - top);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{title}</text>"#,
        (w - right + left) / 2.0
    );
    // Axes, ticks at each measured x, five y ticks.
    let _ = writeln!(
        svg,
        r#"<path d="M{left} {top} V{} H{}" fill="none" stroke="black"/>"#,
        h - bottom,
        w - right
    );
    let mut xs: Vec<f64> = all.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    for v in xs {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{v}</text>"#,
            x(v),
            h - bottom + 16.0
        );
    }
    for i in 0..=ticks {
        let v = step * f64::from(i);
        let label = if step >= 1.0 {
            format!("{v:.0}")
        } else if step >= 0.1 {
            format!("{v:.1}")
        } else {
            format!("{v:.2}")
        };
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{:.1}" text-anchor="end">{label}</text><path d="M{left} {:.1} H{}" stroke="#ddd"/>"##,
            left - 6.0,
            y(v) + 4.0,
            y(v),
            w - right
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{x_label}</text>"#,
        (w - right + left) / 2.0,
        h - 12.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{y_label}</text>"#,
        h / 2.0,
        h / 2.0
    );
    let colours = ["#1f77b4", "#d62728", "#2ca02c"];
    for (i, (name, points)) in series.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let colour = colours[i % colours.len()];
        let path: Vec<String> = points
            .iter()
            .map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for &(px, py) in points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                x(px),
                y(py)
            );
        }
        let ly = top + 20.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<path d="M{} {ly} h20" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{name}</text>"#,
            w - right + 10.0,
            w - right + 36.0,
            ly + 4.0
        );
    }
    let _ = writeln!(svg, "</svg>");
    if let Err(e) =
        std::fs::create_dir_all(plots).and_then(|()| std::fs::write(plots.join(name), svg))
    {
        eprintln!("loadgen: cannot write {}: {e}", plots.join(name).display());
        return;
    }
    let _ = writeln!(s, "\n![{title}](bench/plots/{name})");
}

/// The smallest of 1, 2 or 5 times a power of ten that is at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * power)
}

/// Issue 13's targets, as ratios to the limit measured in the same run.
fn targets(s: &mut String, get: Get, labels: &[&str], limit: f64, limit_batch: f64) {
    let _ = writeln!(
        s,
        "\n### Targets\n\nRatios to the limit measured in this run: {limit:.0} requests/s of single \
         events, {limit_batch:.0} of batches of 100 (bare axum, the best client).\n"
    );
    let _ = writeln!(
        s,
        "| target | SQLite | met | PostgreSQL | met |\n|---|---|---|---|---|"
    );
    let mut row = |target: &str, cells: [Cell; 2]| {
        let met = |m: Option<bool>| match m {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        let _ = writeln!(
            s,
            "| {target} | {} | {} | {} | {} |",
            cells[0].0,
            met(cells[0].1),
            cells[1].0,
            met(cells[1].1)
        );
    };
    let per = |f: &dyn Fn(&str, usize) -> Cell| [f("", 0), f("pg-", 1)];
    let missing = || ("not measured".to_owned(), None);

    row(
        "Durable single-event ingest >= 0.30 (SQLite) / 0.15 (PostgreSQL) of the limit (best connection count)",
        per(&|prefix, i| {
            let best = CONNECTIONS
                .iter()
                .map(|c| f(&get(&format!("{prefix}ingest-c{c}"))["requests_per_s"]))
                .fold(0.0, f64::max);
            if best == 0.0 {
                return missing();
            }
            let ratio = best / limit.max(1.0);
            (
                format!("{best:.0} req/s = {ratio:.2}"),
                Some(ratio >= [0.30, 0.15][i]),
            )
        }),
    );
    row(
        "Batches of 100: events/s >= 1.0x (SQLite) / 0.4x (PostgreSQL) the limit's requests/s",
        per(&|prefix, i| {
            let r = get(&format!("{prefix}ingest-batch"));
            if r.is_null() {
                return missing();
            }
            let ratio = f(&r["events_per_s"]) / limit.max(1.0);
            (
                format!("{:.0} events/s = {ratio:.2}x", f(&r["events_per_s"])),
                Some(ratio >= [1.0, 0.4][i]),
            )
        }),
    );
    row(
        "End to end, instant Button, 60 s, nothing lost: >= 0.15x (SQLite) / 0.08x (PostgreSQL) the limit",
        per(&|prefix, i| {
            let r = get(&format!(
                "{prefix}{}",
                ["e2e-instant-sustained", "e2e-sustained"][i]
            ));
            if r.is_null() {
                return missing();
            }
            let delivered = f(&r["delivery"]["delivered_per_s"]);
            let lost = r["delivery"]["lost"].as_u64().unwrap_or(u64::MAX);
            let ratio = delivered / limit.max(1.0);
            (
                format!(
                    "{:.0}/s offered for {:.0} s, {delivered:.0} delivered/s = {ratio:.3}x, {lost} lost",
                    f(&r["events_per_s"]),
                    f(&r["duration_s"])
                ),
                Some(ratio >= [0.15, 0.08][i] && lost == 0 && f(&r["duration_s"]) >= 59.0),
            )
        }),
    );
    row(
        "At 2,000 events/s: ingest p99 / lag p99 <= 5 / 50 ms (SQLite), 10 / 100 ms (PostgreSQL)",
        per(&|prefix, i| {
            let r = get(&format!("{prefix}{}", ["e2e-instant-2k", "e2e-2k"][i]));
            if r.is_null() {
                return missing();
            }
            let (p99, lag) = (
                f(&r["latency_ms"]["p99"]),
                f(&r["delivery"]["lag_ms"]["p99"]),
            );
            let (max_p99, max_lag) = [(5.0, 50.0), (10.0, 100.0)][i];
            (
                format!("{p99:.2} / {lag:.1} ms"),
                Some(p99 <= max_p99 && lag <= max_lag),
            )
        }),
    );
    let many = *INTEGRATIONS.iter().max().expect("counts");
    row(
        &format!("{many} integrations vs 1, same load: ingest and CPU per event within 20%"),
        per(&|prefix, _| {
            let one_e2e = cpu_ms_per_event(&get(&format!("{prefix}int1-e2e")));
            let many_e2e = cpu_ms_per_event(&get(&format!("{prefix}int{many}-e2e")));
            let one_in = f(&get(&format!("{prefix}int1-ingest"))["requests_per_s"]);
            let many_in = f(&get(&format!("{prefix}int{many}-ingest"))["requests_per_s"]);
            let (Some(one_e2e), Some(many_e2e)) = (one_e2e, many_e2e) else {
                return missing();
            };
            let ingest = many_in / one_in.max(1.0);
            let cpu = many_e2e / one_e2e;
            (
                format!(
                    "ingest {:.0}% of 1's; CPU per event {:.0}% of 1's",
                    100.0 * ingest,
                    100.0 * cpu
                ),
                Some(ingest >= 0.8 && cpu <= 1.2),
            )
        }),
    );
    row(
        "Service CPU per event at 100 events/s, end to end <= 0.2 ms (SQLite) / 0.3 ms (PostgreSQL)",
        per(
            &|prefix, i| match cpu_ms_per_event(&get(&format!("{prefix}cost-100"))) {
                Some(ms) => {
                    let floor = cpu_ms_per_event(&get("bare-cost-100"))
                        .map(|bare| {
                            format!(" = {:.1}x bare axum's {bare:.3} ms per request", ms / bare)
                        })
                        .unwrap_or_default();
                    (format!("{ms:.2} ms{floor}"), Some(ms <= [0.2, 0.3][i]))
                }
                None => missing(),
            },
        ),
    );
    row(
        "Bytes at rest per delivered event <= 700 (SQLite) / 900 (PostgreSQL)",
        [
            ("bench/bytes-at-rest.sh, below".to_owned(), None),
            ("bench/bytes-at-rest.sh, below".to_owned(), None),
        ],
    );
    row(
        "Every Live Logs filter and page, 10,000,000 entries: p99 <= 20 ms",
        [
            ("bench/live-logs.sh, below".to_owned(), None),
            ("bench/live-logs.sh, below".to_owned(), None),
        ],
    );
    row(
        "Peak RSS <= 150 MB (every step of the store)",
        per(&|prefix, _| {
            let pg = !prefix.is_empty();
            let (label, rss) = labels
                .iter()
                .filter(|l| !l.starts_with("bare") && l.starts_with("pg") == pg)
                .map(|l| (*l, f(&get(l)["service"]["peak_rss_mb"])))
                .fold(("", 0.0), |a, b| if b.1 > a.1 { b } else { a });
            if rss == 0.0 {
                return missing();
            }
            (format!("{rss:.0} MB ({label})"), Some(rss <= 150.0))
        }),
    );
}
