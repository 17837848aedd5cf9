//! A bare axum server that responds to every POST with `202`, as a baseline for
//! the ingest benchmark and as a sink for its webhook deliveries.
//!
//! Usage: `cargo run --release --example bare_handler -- 127.0.0.1:18181`

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18181".to_owned());
    let app = Router::new().fallback(post(|| async { StatusCode::ACCEPTED }));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("bare handler listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
