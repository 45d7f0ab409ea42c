//! The serve loop: accepts connections on a bound listener, admits them under the connection
//! caps, runs the handler with HTTP/1.1 keep-alive while a watchdog closes slow-header and idle
//! connections ([`crate::connection`]), and on shutdown stops accepting and drains in-flight
//! requests (bounded).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::connection::{Activity, ConnectionTable, WatchedStream};
use crate::tls::{ServedStream, Tls};
use crate::{Body, ConnectionLimits, ConnectionStats, Shutdown};

/// The peer address of the connection, inserted into every request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct RemoteAddr(pub SocketAddr);

/// The client's address: the first `X-Forwarded-For` hop when the deployment trusts its proxy
/// to set it, else the TCP peer.
pub fn client_ip(headers: &http::HeaderMap, peer: Option<std::net::IpAddr>, trust_forwarded_for: bool) -> Option<std::net::IpAddr> {
    let forwarded = trust_forwarded_for
        .then(|| headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()))
        .flatten()
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok());
    forwarded.or(peer)
}

/// How a server treats its connections.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// How long in-flight requests may take to finish at shutdown.
    pub drain: Duration,
    pub limits: ConnectionLimits,
    /// Where the loop counts what the limits did (shared with `/metrics`).
    pub stats: Arc<ConnectionStats>,
    /// Serve HTTPS with this certificate (reloadable) instead of plain HTTP.
    pub tls: Option<Arc<Tls>>,
}

impl ServeOptions {
    /// Default limits, fresh counters.
    pub fn with_drain(drain: Duration) -> ServeOptions {
        ServeOptions { drain, limits: ConnectionLimits::default(), stats: Arc::default(), tls: None }
    }
}

/// Serves `handler` on `listener` until `shutdown` fires, then drains for up to `options.drain`.
pub async fn serve<H, F>(listener: TcpListener, handler: H, shutdown: Shutdown, options: ServeOptions)
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let table = ConnectionTable::new(options.limits, options.stats);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors or a reset before accept: back off briefly.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let slot = match table.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::debug!(peer = %peer, reason = ?why, "connection refused at a cap");
                table.refuse(stream, why);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let handler = handler.clone();
        let in_service = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let in_flight = in_service.request_started();
            request.extensions_mut().insert(RemoteAddr(peer));
            let response = handler(request);
            async move {
                let response = response.await;
                drop(in_flight);
                Ok::<_, Infallible>(response)
            }
        });
        let watched = WatchedStream::new(stream, Arc::clone(&activity));
        let (tls, builder, watcher) = (options.tls.clone(), builder.clone(), graceful.watcher());
        let (ended, mut watch_end) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            // The slot and `ended` live as long as the connection, however it ends (done or
            // aborted): dropping `ended` tells the watchdog to stop.
            let _slot = slot;
            let _ended = ended;
            // The handshake runs here, under the watchdog, not in the accept loop.
            let io = match tls {
                None => ServedStream::Plain(watched),
                Some(tls) => match tls.accept(watched).await {
                    Ok(stream) => stream,
                    Err(err) => {
                        tracing::debug!(peer = %peer, error = %err, "tls handshake failed");
                        return;
                    }
                },
            };
            let connection = builder.serve_connection(TokioIo::new(io), service).into_owned();
            if let Err(err) = watcher.watch(connection).await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
        // The watchdog is a task of its own that wakes once per tick (the request path only
        // bumps counters); it closes the connection by aborting its task.
        let table = Arc::clone(&table);
        tokio::spawn(async move {
            let tick = Activity::tick(table.limits());
            let mut watch = activity.watch(std::time::Instant::now());
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = &mut watch_end => return,
                }
                if let Some(expiry) = activity.check(&mut watch, table.limits(), std::time::Instant::now()) {
                    activity.count(expiry, table.stats());
                    tracing::debug!(peer = %peer, reason = ?expiry, "closing connection");
                    served.abort();
                    return;
                }
            }
        });
    }
    drop(listener);
    tracing::info!("stopped accepting connections; draining");
    if tokio::time::timeout(options.drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(timeout_ms = options.drain.as_millis() as u64, "drain timed out; closing remaining connections");
    }
}
