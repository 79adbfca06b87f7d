//! The optional HTTP endpoint (`--http ADDR`): `GET /metrics` (Prometheus text) and
//! `GET /healthz` (`ok` while the server accepts work).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::context::Context;

async fn metrics(State(ctx): State<Arc<Context>>) -> impl IntoResponse {
    let body = tokio::task::spawn_blocking(move || ctx.render_metrics())
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn healthz(State(ctx): State<Arc<Context>>) -> impl IntoResponse {
    if ctx.pool.is_stopped() {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

/// Binds `addr` (so a bad or busy address fails start-up) and returns the serving
/// future.
pub async fn bind(
    addr: &str,
    ctx: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("http: cannot listen on {addr}: {e}"))?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(ctx);
    Ok(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.changed().await;
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "http endpoint stopped");
        }
    })
}
