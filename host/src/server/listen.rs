//! The accept loop: HTTP/1.1 connections served by hyper with the bounds
//! `axum::serve` does not set.
//!
//! - **Request heads** must arrive within `header_timeout`, and an idle
//!   keep-alive connection is closed after it too (hyper's header timer
//!   starts when it waits for the next request's head): a client sending
//!   headers a byte at a time, or opening connections and saying nothing,
//!   holds a connection for that long at most.
//! - **Bodies and handlers** are bounded by `request_timeout` (see the
//!   `timeout` middleware), which covers reading the body.
//! - **Connections** are capped at `max_connections`: at the cap the loop
//!   stops accepting (new connections wait in the kernel's backlog) until
//!   one closes, so the process never runs out of file descriptors, and
//!   what it holds is bounded by the header timeout.
//!
//! Shutdown stops accepting, and lets open connections finish their
//! requests (hyper's graceful shutdown closes idle ones at once).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// What bounds the connections of one listener.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Time to read a request's head, and to wait for the next one.
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `stop` turns true, then waits for
/// the open connections to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let stopping = async move {
        let _ = stop.wait_for(|down| *down).await;
    };
    tokio::pin!(stopping);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
            () = &mut stopping => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a little rather than spin.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopping => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
