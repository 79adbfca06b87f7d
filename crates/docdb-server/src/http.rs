//! The optional HTTP endpoint (`--http ADDR`): `GET /metrics` (OpenMetrics or the
//! classic Prometheus text, by the `Accept` header) and
//! `GET /healthz` (`ok` while every database accepts writes, else 503 and the list).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::context::Context;
use crate::metrics;

/// OpenMetrics when the scraper's `Accept` asks for it (Prometheus does), else the
/// classic text format 0.0.4.
async fn metrics(State(ctx): State<Arc<Context>>, headers: HeaderMap) -> impl IntoResponse {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(metrics::wants_openmetrics);
    let body = tokio::task::spawn_blocking(move || ctx.render_metrics())
        .await
        .unwrap_or_default();
    if openmetrics {
        (
            [(header::CONTENT_TYPE, metrics::OPENMETRICS_CONTENT_TYPE)],
            body,
        )
    } else {
        (
            [(header::CONTENT_TYPE, metrics::CLASSIC_CONTENT_TYPE)],
            metrics::to_classic(&body),
        )
    }
}

/// 200 `ok`; 503 `stopping` during shutdown; 503 listing every database that refuses
/// writes after an I/O failure (one `read-only: <name> (id N)` line each), so a
/// monitor notices a tenant that can no longer write.
async fn healthz(State(ctx): State<Arc<Context>>) -> impl IntoResponse {
    if ctx.pool.is_stopped() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping\n".to_owned());
    }
    let failed = tokio::task::spawn_blocking(move || ctx.pool.read_only_dbs())
        .await
        .unwrap_or_default();
    if failed.is_empty() {
        return (StatusCode::OK, "ok\n".to_owned());
    }
    let mut body = String::new();
    for e in failed {
        body.push_str(&format!("read-only: {} (id {})\n", e.name, e.id));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body)
}

/// Binds `addr` (so a bad or busy address fails start-up) and returns the address
/// actually bound (the real port for `127.0.0.1:0`) and the serving future.
pub async fn bind(
    addr: &str,
    ctx: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("--http {addr}: cannot listen: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| anyhow::anyhow!("--http {addr}: {e}"))?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(ctx);
    Ok((local, async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.changed().await;
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "http endpoint stopped");
        }
    }))
}
