//! What one client may hold of a server: connection caps (over every client and per client
//! address), the header-read and idle timeouts of a connection, and the refusal a client gets
//! past a cap. The serve loop ([`crate::serve`]) applies them; body timeouts belong to the
//! handlers, which know when they read a body.
//!
//! Timeouts are measured on the socket itself: a wrapper around the TCP stream notes when bytes
//! move, and a request in flight (handed to the handler, not yet answered) is never idle, however
//! long its handler waits on a broker or a store.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::MetricsRegistry;

/// Limits every server applies to its connections (0 in a cap means no cap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once over every client; past it a new connection is answered 503.
    pub max_connections: usize,
    /// Connections open at once from one client address (IPv6 clients by their /64).
    pub max_connections_per_ip: usize,
    /// Longest time from a request's first byte to its complete header (slow-header clients).
    pub header_timeout: Duration,
    /// Longest time a connection may sit with no request in flight and no bytes moving.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits { max_connections: 10_000, max_connections_per_ip: 512, header_timeout: Duration::from_secs(10), idle_timeout: Duration::from_secs(30) }
    }
}

impl ConnectionLimits {
    /// Fits `max_connections` under the process's open-file limit, raising the soft limit
    /// towards the hard one first. Returns the limits to use and, when the cap had to come down,
    /// the file limit that forced it.
    pub fn fit_to_open_file_limit(mut self) -> (ConnectionLimits, Option<u64>) {
        const RESERVED: u64 = 256; // log segments, store files, outgoing connections
        let wanted = if self.max_connections == 0 { u64::MAX } else { self.max_connections as u64 + RESERVED };
        let available = raise_open_file_limit(wanted);
        if available < wanted {
            let fitted = available.saturating_sub(RESERVED).max(16) as usize;
            self.max_connections = fitted;
            return (self, Some(available));
        }
        (self, None)
    }
}

/// Raises the soft open-file limit up to `wanted` (never past the hard limit); returns the
/// soft limit in force afterwards.
fn raise_open_file_limit(wanted: u64) -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return u64::MAX;
        }
        if (limit.rlim_cur as u64) < wanted {
            let raised = libc::rlimit { rlim_cur: (wanted as libc::rlim_t).min(limit.rlim_max), rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = raised.rlim_cur;
            }
        }
    }
    limit.rlim_cur as u64
}

/// Counters of what the limits did, exported on `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicUsize,
    refused_total: AtomicU64,
    refused_per_address: AtomicU64,
    header_timeouts: AtomicU64,
    idle_closed: AtomicU64,
}

impl ConnectionStats {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections refused by the global cap and by the per-address cap.
    pub fn refused(&self) -> (u64, u64) {
        (self.refused_total.load(Ordering::Relaxed), self.refused_per_address.load(Ordering::Relaxed))
    }

    /// Connections closed for a slow header and for idling.
    pub fn timed_out(&self) -> (u64, u64) {
        (self.header_timeouts.load(Ordering::Relaxed), self.idle_closed.load(Ordering::Relaxed))
    }

    /// Mirrors these counters into `metrics` at every scrape.
    pub fn register(self: &Arc<Self>, metrics: &MetricsRegistry) {
        let open: Gauge = Gauge::default();
        let refused_total: Counter = Counter::default();
        let refused_per_address: Counter = Counter::default();
        let header_timeouts: Counter = Counter::default();
        let idle_closed: Counter = Counter::default();
        metrics.register(|r| {
            r.register("http_connections_open", "HTTP connections open now", open.clone());
            r.register("http_connections_refused_global_cap", "Connections refused because the server held its maximum", refused_total.clone());
            r.register("http_connections_refused_address_cap", "Connections refused because their address held its maximum", refused_per_address.clone());
            r.register("http_connections_header_timeout", "Connections closed because a request header arrived too slowly", header_timeouts.clone());
            r.register("http_connections_idle_closed", "Keep-alive connections closed after idling", idle_closed.clone());
        });
        let stats = Arc::clone(self);
        metrics.on_scrape(move || {
            open.set(stats.open() as i64);
            let (global, per_address) = stats.refused();
            let (header, idle) = stats.timed_out();
            for (counter, value) in [(&refused_total, global), (&refused_per_address, per_address), (&header_timeouts, header), (&idle_closed, idle)] {
                counter.inc_by(value.saturating_sub(counter.get()));
            }
        });
    }
}

/// Why a connection was not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Total,
    PerAddress,
}

/// Counts open connections, overall and per client address.
pub(crate) struct ConnectionTable {
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    per_address: Mutex<HashMap<IpAddr, u32>>,
    refusals_in_flight: AtomicUsize,
}

/// A counted connection; dropping it frees its place.
pub(crate) struct Slot {
    table: Arc<ConnectionTable>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.stats.open.fetch_sub(1, Ordering::Relaxed);
        let mut per_address = self.table.per_address.lock();
        if let Some(count) = per_address.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                per_address.remove(&self.key);
            }
        }
    }
}

/// IPv4 clients by address, IPv6 clients by their /64 (one host usually holds a whole /64).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

impl ConnectionTable {
    pub(crate) fn new(limits: ConnectionLimits, stats: Arc<ConnectionStats>) -> Arc<ConnectionTable> {
        Arc::new(ConnectionTable { limits, stats, per_address: Mutex::default(), refusals_in_flight: AtomicUsize::new(0) })
    }

    pub(crate) fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    pub(crate) fn stats(&self) -> &ConnectionStats {
        &self.stats
    }

    /// A place for a new connection from `ip`, or why there is none.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let key = address_key(ip);
        let mut per_address = self.per_address.lock();
        if self.limits.max_connections > 0 && self.stats.open() >= self.limits.max_connections {
            self.stats.refused_total.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Total);
        }
        let count = per_address.entry(key).or_insert(0);
        if self.limits.max_connections_per_ip > 0 && *count as usize >= self.limits.max_connections_per_ip {
            self.stats.refused_per_address.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::PerAddress);
        }
        *count += 1;
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        Ok(Slot { table: Arc::clone(self), key })
    }

    /// Answers a refused connection with a 503 and closes it, within a second. Past 1 024
    /// refusals being answered at once, further ones are closed without an answer so a flood
    /// cannot pile up tasks and sockets.
    pub(crate) fn refuse(self: &Arc<Self>, mut stream: TcpStream, why: Refusal) {
        if self.refusals_in_flight.fetch_add(1, Ordering::Relaxed) >= 1_024 {
            self.refusals_in_flight.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let table = Arc::clone(self);
        tokio::spawn(async move {
            let (code, message) = match why {
                Refusal::Total => ("too_many_connections", "the server holds as many connections as it accepts; retry shortly"),
                Refusal::PerAddress => ("too_many_connections_from_address", "this address holds as many connections as the server accepts from one address; close idle ones or retry shortly"),
            };
            let body = format!("{{\"error\":{{\"code\":\"{code}\",\"message\":\"{message}\",\"retryable\":true}}}}");
            let reply = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let answer = async {
                stream.write_all(reply.as_bytes()).await?;
                stream.shutdown().await?;
                // Read what the client already sent, so closing does not reset the connection
                // before it has read the answer.
                let mut sink = [0u8; 4096];
                let mut read = 0;
                while read < 64 * 1024 {
                    match stream.read(&mut sink).await? {
                        0 => break,
                        n => read += n,
                    }
                }
                Ok::<(), io::Error>(())
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
            table.refusals_in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// What the socket and the handler did, counted without reading a clock on the request path
/// (a clock read per socket operation cost ~9 % of the collector's rate on this kind of VM): the
/// watchdog reads the clock once per tick and turns changed counters into times.
pub(crate) struct Activity {
    /// Socket reads and writes that moved bytes.
    io: AtomicU64,
    /// Requests handed to the handler.
    requests: AtomicU64,
    in_flight: AtomicU32,
    /// Bytes of a request head arrived and no request was handed on since.
    awaiting_head: std::sync::atomic::AtomicBool,
}

/// Why the watchdog closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    HeaderTimeout,
    Idle,
}

/// The watchdog's view of one connection between ticks.
pub(crate) struct Watch {
    seen_io: u64,
    seen_requests: u64,
    last_io_at: Instant,
    head_since: Option<Instant>,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity { io: AtomicU64::new(0), requests: AtomicU64::new(0), in_flight: AtomicU32::new(0), awaiting_head: std::sync::atomic::AtomicBool::new(false) })
    }

    fn on_read(&self) {
        self.io.fetch_add(1, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            self.awaiting_head.store(true, Ordering::Relaxed);
        }
    }

    fn on_write(&self) {
        self.io.fetch_add(1, Ordering::Relaxed);
    }

    /// The handler got a request; the guard marks it answered when dropped.
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        self.awaiting_head.store(false, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// How often the watchdog looks: a quarter of the shorter timeout, so a timeout fires at
    /// most a quarter late.
    pub(crate) fn tick(limits: &ConnectionLimits) -> Duration {
        (limits.header_timeout.min(limits.idle_timeout) / 4).max(Duration::from_millis(5))
    }

    pub(crate) fn watch(&self, now: Instant) -> Watch {
        Watch { seen_io: self.io.load(Ordering::Relaxed), seen_requests: self.requests.load(Ordering::Relaxed), last_io_at: now, head_since: None }
    }

    /// One tick of the watchdog at `now`: the reason to close, if any.
    pub(crate) fn check(&self, watch: &mut Watch, limits: &ConnectionLimits, now: Instant) -> Option<Expiry> {
        let io = self.io.load(Ordering::Relaxed);
        if io != watch.seen_io {
            watch.seen_io = io;
            watch.last_io_at = now;
        }
        let requests = self.requests.load(Ordering::Relaxed);
        if requests != watch.seen_requests {
            // A head completed since the last tick: whatever head is pending now is a new one.
            watch.seen_requests = requests;
            watch.head_since = None;
        }
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            watch.head_since = None;
            return None;
        }
        if self.awaiting_head.load(Ordering::Relaxed) {
            let since = *watch.head_since.get_or_insert(now);
            return (now.duration_since(since) >= limits.header_timeout).then_some(Expiry::HeaderTimeout);
        }
        watch.head_since = None;
        (now.duration_since(watch.last_io_at) >= limits.idle_timeout).then_some(Expiry::Idle)
    }

    pub(crate) fn count(&self, expiry: Expiry, stats: &ConnectionStats) {
        match expiry {
            Expiry::HeaderTimeout => stats.header_timeouts.fetch_add(1, Ordering::Relaxed),
            Expiry::Idle => stats.idle_closed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// A request in the handler's hands.
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.on_write();
    }
}

/// The TCP stream, noting in [`Activity`] when bytes move.
pub(crate) struct WatchedStream {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl WatchedStream {
    pub(crate) fn new(inner: TcpStream, activity: Arc<Activity>) -> WatchedStream {
        WatchedStream { inner, activity }
    }
}

impl AsyncRead for WatchedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        polled
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize) -> ConnectionLimits {
        ConnectionLimits { max_connections: total, max_connections_per_ip: per_ip, ..ConnectionLimits::default() }
    }

    #[test]
    fn caps_count_per_address_and_free_on_drop() {
        let stats = Arc::new(ConnectionStats::default());
        let table = ConnectionTable::new(limits(3, 2), stats.clone());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = table.admit(a).unwrap();
        let _second = table.admit(a).unwrap();
        assert_eq!(table.admit(a).err(), Some(Refusal::PerAddress));
        let _third = table.admit(b).unwrap();
        assert_eq!(table.admit(b).err(), Some(Refusal::Total), "three open: the global cap");
        drop(first);
        assert_eq!(stats.open(), 2);
        assert!(table.admit(a).is_ok(), "a freed place is reusable");
        assert_eq!(stats.refused(), (1, 1));
        assert!(table.per_address.lock().values().all(|n| *n > 0), "no zero counts kept");
    }

    #[test]
    fn zero_means_no_cap() {
        let table = ConnectionTable::new(limits(0, 0), Arc::new(ConnectionStats::default()));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let slots: Vec<Slot> = (0..1_000).map(|_| table.admit(ip).unwrap()).collect();
        assert_eq!(slots.len(), 1_000);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_slash_64_and_mapped_v4_as_v4() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_net: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_net: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(one), address_key(same_net));
        assert_ne!(address_key(one), address_key(other_net));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn timeouts_follow_the_socket_and_spare_requests_in_flight() {
        let limits = ConnectionLimits { header_timeout: Duration::from_secs(4), idle_timeout: Duration::from_secs(8), ..ConnectionLimits::default() };
        let activity = Activity::new();
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let mut watch = activity.watch(t0);
        assert_eq!(activity.check(&mut watch, &limits, at(7)), None, "a new connection has its idle time");
        assert_eq!(activity.check(&mut watch, &limits, at(8)), Some(Expiry::Idle));

        let mut watch = activity.watch(t0);
        activity.on_read(); // the first bytes of a request head
        assert_eq!(activity.check(&mut watch, &limits, at(1)), None);
        activity.on_read(); // more bytes, still no complete head
        assert_eq!(activity.check(&mut watch, &limits, at(4)), None);
        assert_eq!(activity.check(&mut watch, &limits, at(5)), Some(Expiry::HeaderTimeout), "the head is late even though bytes moved");

        let request = activity.request_started();
        assert_eq!(activity.check(&mut watch, &limits, at(30)), None, "a request in flight is never idle");
        drop(request);
        assert_eq!(activity.check(&mut watch, &limits, at(31)), None, "answering counts as activity");
        assert_eq!(activity.check(&mut watch, &limits, at(39)), Some(Expiry::Idle));

        // A head that completes between ticks does not make the next head look old.
        let mut watch = activity.watch(t0);
        activity.on_read();
        assert_eq!(activity.check(&mut watch, &limits, at(1)), None);
        drop(activity.request_started());
        activity.on_read();
        assert_eq!(activity.check(&mut watch, &limits, at(4)), None, "a new head started after a request was handed on");
        assert_eq!(activity.check(&mut watch, &limits, at(9)), Some(Expiry::HeaderTimeout));
        assert_eq!(Activity::tick(&limits), Duration::from_secs(1));
    }

    #[test]
    fn the_open_file_limit_bounds_the_connection_cap() {
        let (fitted, forced) = ConnectionLimits { max_connections: usize::MAX / 2, ..ConnectionLimits::default() }.fit_to_open_file_limit();
        assert!(forced.is_some(), "no process may hold usize::MAX/2 files");
        assert!(fitted.max_connections < usize::MAX / 2 && fitted.max_connections >= 16);
        let (small, forced) = ConnectionLimits { max_connections: 10, ..ConnectionLimits::default() }.fit_to_open_file_limit();
        assert_eq!((small.max_connections, forced), (10, None));
    }
}
