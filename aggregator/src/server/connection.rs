//! The accept loop: one hyper HTTP/1 connection per client, bounded in number (a
//! semaphore taken before `accept`), in header time and buffer size (hyper's
//! `header_read_timeout`, which also closes a kept-alive connection left idle, and
//! `max_buf_size`), and drained with a deadline on shutdown (hyper-util's
//! `GracefulShutdown`, then the tasks still running are aborted).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Limits;

/// Serves `app` on `listener` until `stop` completes, then drains.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut tasks = JoinSet::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    tokio::pin!(stop);
    loop {
        // A free slot first, so that a full server leaves clients in the listen backlog
        // instead of accepting them past the file-descriptor limit.
        let slot = tokio::select! {
            () = &mut stop => break,
            s = Arc::clone(&slots).acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (stream, _peer) = tokio::select! {
            () = &mut stop => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE, ENFILE, ECONNABORTED…: the listener stays usable; wait a
                    // little so that a persistent error does not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tasks.spawn(async move {
            // Errors are a client's doing (reset, header timeout, bad request line).
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!(connections = graceful.count(), drain_ms = limits.drain.as_millis(), "stopping: draining");
    if tokio::time::timeout(limits.drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(cut = tasks.len(), "drain deadline reached: cutting the connections still open");
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}
