use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use button_delivery::config::Settings;
use button_delivery::startup::Application;
use button_delivery::store::Store;
use button_delivery::telemetry;

/// mimalloc: the service allocates many small, short-lived buffers per event (JSON
/// values, SQL arguments); it measured faster than the system allocator for that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: button-delivery [serve | migrate | healthcheck | openapi]

  serve        run the service (the default)
  migrate      apply the database's pending migrations, then stop
  healthcheck  exit 0 when the local service answers /readyz (for container checks)
  openapi      print the OpenAPI document

Settings come from config/default.toml, then BUTTON_* environment variables
(for example BUTTON_DATABASE__URL); see the README.";

/// Transparent huge pages off for this process. mimalloc asks for them on the memory it
/// reserves (`madvise(MADV_HUGEPAGE)`); a host that grants them (most Linux defaults)
/// then backs each region the allocator touches with 2 MiB pages instead of 4 KiB
/// ones. Measured: about 30 MB more resident memory at every load, and no CPU saved
/// (BENCHMARKS.md). The same as `MIMALLOC_ALLOW_THP=0`, which mimalloc reads before
/// `main` runs; this needs no environment.
#[cfg(target_os = "linux")]
fn no_huge_pages() {
    // The variadic arguments go as unsigned longs, as the kernel reads them (ints
    // would leave the registers' upper halves undefined, and it refuses nonzero ones).
    let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
    // SAFETY: prctl(PR_SET_THP_DISABLE) takes integers only and touches no memory of
    // this process. If it fails, huge pages simply stay allowed.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused);
    }
}

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    no_huge_pages();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match args.as_slice() {
        [] => "serve",
        [one] => one.as_str(),
        _ => "",
    };
    match command {
        "serve" | "migrate" | "healthcheck" | "openapi" => {}
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("button-delivery: unknown arguments {args:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    if command == "openapi" {
        println!(
            "{}",
            button_delivery::http::openapi()
                .to_pretty_json()
                .expect("the document serialises")
        );
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match command {
        "healthcheck" => return healthcheck(&settings),
        "migrate" => return migrate(&settings),
        _ => {}
    }
    // The log writer outlives the runtime, so the last lines of every task get out.
    let _flush_logs_on_exit = telemetry::init(&settings.log);
    let runtime = tokio::runtime::Runtime::new().expect("the runtime starts");
    let code = runtime.block_on(serve(settings));
    runtime.shutdown_timeout(Duration::from_secs(5));
    code
}

async fn serve(settings: Settings) -> ExitCode {
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %app.local_addr(), version = env!("CARGO_PKG_VERSION"), "listening");
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// `button-delivery migrate`: applies the database's pending migrations and stops, for
/// operators who run them as a step of their own (with `database.migrate_on_start`
/// false, replicas then refuse a database that lacks one).
fn migrate(settings: &Settings) -> ExitCode {
    let kind = settings
        .database_kind()
        .expect("the settings were validated");
    let runtime = tokio::runtime::Runtime::new().expect("the runtime starts");
    match runtime.block_on(Store::migrate(
        kind,
        &settings.database_url(),
        &settings.database,
    )) {
        Ok(applied) => {
            println!("migrations: {applied} applied; the database is up to date");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("migrations failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `button-delivery healthcheck`: exits 0 when this host's service answers /healthz.
/// The container's HEALTHCHECK uses it, so the image needs no curl.
fn healthcheck(settings: &Settings) -> ExitCode {
    let port = settings.listen_addr().map(|a| a.port()).unwrap_or(8084);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let answer = (|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(String::from_utf8_lossy(&head).into_owned())
    })();
    match answer {
        Ok(head) if head.ends_with(" 200") => ExitCode::SUCCESS,
        Ok(head) => {
            eprintln!("unhealthy: {head}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}
