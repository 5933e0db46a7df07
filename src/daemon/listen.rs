//! Serving the status router so that slow or idle clients cannot starve the daemon:
//! hyper closes a connection whose request head is not in within the header timeout
//! (idle keep-alive included), at most `max_connections` are open at once (more wait in
//! the kernel's backlog, costing the daemon no file descriptor), and tower bounds every
//! request's time, body size and the requests handled at once.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// The status server's bounds (`steward run --status-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time a connection has to send a request head, from accept or from its last answer.
    pub header_timeout: Duration,
    /// Time a request has from its head to its answer (its body included).
    pub request_timeout: Duration,
    /// Largest request body (a GitHub webhook delivery is the only one).
    pub max_body: usize,
    /// Requests handled at once.
    pub max_requests: usize,
}

impl ServerLimits {
    /// 256 connections, or a quarter of the file descriptors this process may open when
    /// that is fewer, so the status port can never take those that Postgres, Vercel and
    /// health checks need.
    pub fn default_max_connections() -> usize {
        let fds = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(u64::MAX, |(soft, _)| soft);
        usize::try_from(fds / 4).unwrap_or(usize::MAX).clamp(8, 256)
    }
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: Self::default_max_connections(),
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_body: 1024 * 1024,
            max_requests: 64,
        }
    }
}

/// Accept connections on `listener` and serve `router` on each, within `limits`, until
/// the process ends.
pub async fn serve(listener: TcpListener, router: Router, limits: ServerLimits) {
    let service = ServiceBuilder::new()
        .layer(RequestBodyLimitLayer::new(limits.max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(GlobalConcurrencyLimitLayer::new(limits.max_requests))
        .service(router);
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        // A free slot first: while every slot is taken, new connections wait in the
        // kernel's backlog instead of holding one of the daemon's file descriptors.
        let Ok(slot) = connections.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors (or a connection reset before accept): the
                // listener stays; try again shortly rather than spin.
                tracing::warn!(%err, "status server: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(service.clone()),
        );
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "status server: connection closed");
            }
            drop(slot);
        });
    }
}
