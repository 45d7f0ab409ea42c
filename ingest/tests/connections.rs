//! What a client may hold of the collector, tried over real sockets: idle connections are closed
//! after the idle timeout, slow headers after the header timeout, a stalled body is answered 408,
//! and past the caps new connections get a 503 that names the cap — while beacons from other
//! addresses keep being accepted throughout. Attackers connect from other loopback addresses
//! (127.0.0.2…), so the per-address cap applies to them and not to the beacons.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_ingest::CollectorConfig;
use crm_service::{ConnectionLimits, ConnectionStats, ServeOptions};
use support::{pageview, start_serving, Harness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const HEADER_TIMEOUT: Duration = Duration::from_millis(400);
const IDLE_TIMEOUT: Duration = Duration::from_millis(800);
const BODY_TIMEOUT: Duration = Duration::from_millis(600);

async fn harness(max_connections: usize, per_ip: usize) -> (Harness, Arc<ConnectionStats>) {
    let stats = Arc::new(ConnectionStats::default());
    let limits = ConnectionLimits { max_connections, max_connections_per_ip: per_ip, header_timeout: HEADER_TIMEOUT, idle_timeout: IDLE_TIMEOUT };
    let options = ServeOptions { drain: Duration::from_secs(1), limits, stats: stats.clone(), tls: None };
    let config = CollectorConfig { per_ip_rate: None, body_timeout: BODY_TIMEOUT, ..CollectorConfig::default() };
    (start_serving(config, |c| c, options).await, stats)
}

fn server_addr(harness: &Harness) -> SocketAddr {
    harness.base.trim_start_matches("http://").parse().unwrap()
}

/// A connection from the loopback address `127.0.0.{host}`.
async fn connect_from(host: u8, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, host], 0))).unwrap();
    socket.connect(server).await.unwrap()
}

/// Reads until the server closes the connection (or `within` passes): what it said, and whether
/// it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut text = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return (String::from_utf8_lossy(&text).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&text).into_owned(), true),
            Ok(Ok(n)) => text.extend_from_slice(&buffer[..n]),
        }
    }
}

async fn beacon_accepted(harness: &Harness) -> bool {
    harness.post_json(&serde_json::json!({ "events": [pageview("open")] })).await.0 == 202
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_clients_are_dropped_while_beacons_are_accepted() {
    let (harness, stats) = harness(1_000, 20).await;
    let server = server_addr(&harness);

    // 20 idle connections from one address are held; the 21st to 30th are refused with a 503
    // naming the per-address cap.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(connect_from(2, server).await);
    }
    for _ in 0..10 {
        let mut refused = connect_from(2, server).await;
        let (reply, closed) = read_until_closed(&mut refused, Duration::from_secs(3)).await;
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        assert!(reply.contains("too_many_connections_from_address") && closed, "{reply}");
    }
    assert!(beacon_accepted(&harness).await, "another address is not held back by that cap");

    // Slow headers: a byte every 100 ms never completes a head within the header timeout.
    let mut slow_headers = Vec::new();
    for _ in 0..5 {
        let mut stream = connect_from(3, server).await;
        stream.write_all(b"POST /v1/events HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        slow_headers.push(stream);
    }
    let started = Instant::now();
    let mut trickle_closed = vec![false; slow_headers.len()];
    while started.elapsed() < Duration::from_secs(5) && trickle_closed.iter().any(|c| !c) {
        for (stream, closed) in slow_headers.iter_mut().zip(trickle_closed.iter_mut()) {
            if !*closed && stream.write_all(b"x").await.is_err() {
                *closed = true;
            }
        }
        assert!(beacon_accepted(&harness).await, "beacons are accepted while slow clients hold connections");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for stream in &mut slow_headers {
        let (_, closed) = read_until_closed(stream, Duration::from_secs(2)).await;
        assert!(closed, "a slow header is cut off");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "slow headers were cut within the timeout (took {:?})", started.elapsed());

    // A body that stalls is answered 408 `body_timeout`.
    let mut stalled = connect_from(4, server).await;
    stalled.write_all(b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"events\":[").await.unwrap();
    let (reply, _) = read_until_closed(&mut stalled, Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("body_timeout"), "{reply}");

    // The idle connections are closed by the server after the idle timeout, freeing their places.
    for stream in &mut idle {
        let (_, closed) = read_until_closed(stream, Duration::from_secs(5)).await;
        assert!(closed, "an idle connection is closed");
    }
    let (header_timeouts, idle_closed) = stats.timed_out();
    assert!(header_timeouts >= 5, "{header_timeouts} header timeouts");
    assert!(idle_closed >= 20, "{idle_closed} idle closes");
    assert_eq!(stats.refused(), (0, 10));
    let mut again = connect_from(2, server).await;
    again.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let (reply, _) = read_until_closed(&mut again, Duration::from_secs(3)).await;
    assert!(reply.starts_with("HTTP/1.1 "), "the address may connect again once its idle connections are gone: {reply}");
    assert!(!reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(beacon_accepted(&harness).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_in_use_is_not_idle_and_the_global_cap_answers_503() {
    let (harness, stats) = harness(12, 0).await;
    let server = server_addr(&harness);

    // One keep-alive connection sending a request every 300 ms (under the idle timeout) for
    // longer than the idle timeout stays open.
    let mut busy = connect_from(5, server).await;
    let body = serde_json::json!({ "events": [pageview("open")] }).to_string();
    let request = format!("POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
    for _ in 0..6 {
        busy.write_all(request.as_bytes()).await.unwrap();
        let mut buffer = [0u8; 1024];
        let n = busy.read(&mut buffer).await.unwrap();
        assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 202"), "a request on the kept-alive connection is served");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The global cap: 11 more connections fill it (12 with `busy`), the next gets 503.
    let mut held = Vec::new();
    for host in 0..11u8 {
        held.push(connect_from(10 + host, server).await);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut refused = connect_from(30, server).await;
    let (reply, _) = read_until_closed(&mut refused, Duration::from_secs(3)).await;
    assert!(reply.starts_with("HTTP/1.1 503") && reply.contains("\"too_many_connections\""), "{reply}");
    assert!(reply.to_ascii_lowercase().contains("retry-after: 1"), "{reply}");
    assert_eq!(stats.refused(), (1, 0));
    assert_eq!(stats.open(), 12);
    drop(held);
    drop(busy);
    let deadline = Instant::now() + Duration::from_secs(3);
    while stats.open() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats.open(), 0, "closed connections give their places back");
    assert!(beacon_accepted(&harness).await);
}
