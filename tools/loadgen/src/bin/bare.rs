//! `bare`: the limit. An axum server that reads each POSTed body and answers `202`
//! with a small JSON, doing nothing else: what the machine can serve at most with the
//! same HTTP stack, measured by the same load generator.
//!
//!     bare [--listen 127.0.0.1:9098]

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;

async fn accept(body: Bytes) -> impl IntoResponse {
    let answer = format!(
        "{{\"accepted\":1,\"duplicates\":0,\"rejected\":0,\"deliveries_queued\":1,\"bytes\":{}}}",
        body.len()
    );
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        answer,
    )
}

#[tokio::main]
async fn main() {
    let mut listen = "127.0.0.1:9098".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().expect("--listen takes host:port"),
            other => {
                eprintln!("usage: bare [--listen HOST:PORT] (unknown {other})");
                std::process::exit(2);
            }
        }
    }
    let router = Router::new()
        .route("/v1/events", post(accept))
        .route("/v1/events/batch", post(accept));
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .expect("bare binds");
    eprintln!("bare listening on http://{listen}");
    axum::serve(listener, router).await.expect("bare serves");
}
