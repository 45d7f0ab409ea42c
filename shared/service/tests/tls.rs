//! HTTPS on the serve loop: certificates made here with rcgen, a rustls client trusting exactly
//! one of them, and the server's typed load errors, reloads and handshake watchdog.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crm_service::{serve, text_response, ConnectionLimits, ServeOptions, Shutdown, Tls, TlsError, TlsFiles};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Made {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn make_cert() -> Made {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    Made { cert_pem: made.cert.pem(), key_pem: made.key_pair.serialize_pem(), der: made.cert.der().clone() }
}

fn write_files(dir: &Path, made: &Made) -> TlsFiles {
    let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&files.cert, &made.cert_pem).unwrap();
    std::fs::write(&files.key, &made.key_pem).unwrap();
    files
}

async fn start(tls: Arc<Tls>, limits: ConnectionLimits) -> (std::net::SocketAddr, Shutdown, Arc<crm_service::ConnectionStats>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let options = ServeOptions { tls: Some(tls), limits, ..ServeOptions::with_drain(Duration::from_secs(1)) };
    let stats = options.stats.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        serve(listener, |_request| async { text_response(StatusCode::OK, "text/plain", "ok") }, stop, options).await;
    });
    (addr, shutdown, stats)
}

fn client(trusted: &CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// A keep-alive HTTPS connection trusting `trusted` only.
async fn connect(addr: std::net::SocketAddr, trusted: &CertificateDer<'static>) -> std::io::Result<Sender> {
    let tcp = TcpStream::connect(addr).await?;
    let tls = client(trusted).connect(ServerName::try_from("localhost").unwrap(), tcp).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn get(sender: &mut Sender) -> (StatusCode, String) {
    let response = sender.send_request(Request::get("/").header("host", "localhost").body(Empty::new()).unwrap()).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn serves_https_and_closes_plain_http_on_the_tls_port() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_cert();
    let tls = Tls::load(write_files(dir.path(), &a)).unwrap();
    let (addr, shutdown, _) = start(tls.clone(), ConnectionLimits::default()).await;

    let mut sender = connect(addr, &a.der).await.unwrap();
    assert_eq!(get(&mut sender).await, (StatusCode::OK, "ok".to_owned()));

    // Plain HTTP on the TLS port: the handshake fails and the connection closes without an
    // HTTP answer (nothing reaches the handler).
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer)).await.expect("closed");
    assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"), "{answer:?}");
    assert_eq!(tls.counts().2, 1, "one failed handshake counted");

    // The server keeps serving TLS clients, on the old connection and new ones.
    assert_eq!(get(&mut sender).await.0, StatusCode::OK);
    assert_eq!(get(&mut connect(addr, &a.der).await.unwrap()).await.0, StatusCode::OK);
    shutdown.trigger();
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_to_new_connections_and_a_bad_one_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (make_cert(), make_cert());
    let files = write_files(dir.path(), &a);
    let tls = Tls::load(files.clone()).unwrap();
    let (addr, shutdown, _) = start(tls.clone(), ConnectionLimits::default()).await;
    let mut before = connect(addr, &a.der).await.unwrap();
    assert!(connect(addr, &b.der).await.is_err(), "b is not served yet");

    write_files(dir.path(), &b);
    tls.reload().unwrap();
    assert_eq!(get(&mut connect(addr, &b.der).await.unwrap()).await.0, StatusCode::OK);
    assert!(connect(addr, &a.der).await.is_err(), "new connections get b");
    assert_eq!(get(&mut before).await.0, StatusCode::OK, "a connection opened before the reload keeps working");

    // A renewal half-written (a key that is not PEM): refused, b still served.
    std::fs::write(&files.key, "not a key").unwrap();
    assert!(matches!(tls.reload(), Err(TlsError::NoKey { .. })));
    assert_eq!(get(&mut connect(addr, &b.der).await.unwrap()).await.0, StatusCode::OK);
    // A certificate whose key is someone else's: refused too.
    std::fs::write(&files.cert, &a.cert_pem).unwrap();
    std::fs::write(&files.key, &b.key_pem).unwrap();
    assert!(matches!(tls.reload(), Err(TlsError::KeyMismatch { .. })));
    assert_eq!(get(&mut connect(addr, &b.der).await.unwrap()).await.0, StatusCode::OK);
    let (ok, refused, _) = tls.counts();
    assert_eq!((ok, refused), (1, 2), "one reload took effect, two were refused");
    shutdown.trigger();
}

#[test]
fn load_errors_name_the_file_and_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (make_cert(), make_cert());
    let files = write_files(dir.path(), &a);

    let missing = TlsFiles { cert: dir.path().join("absent.pem"), key: files.key.clone() };
    let err = Tls::load(missing).unwrap_err();
    assert!(matches!(&err, TlsError::Read { path, .. } if path.ends_with("absent.pem")), "{err}");
    assert!(err.is_retryable());

    std::fs::write(dir.path().join("text.pem"), "hello\n").unwrap();
    let err = Tls::load(TlsFiles { cert: dir.path().join("text.pem"), key: files.key.clone() }).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
    // A key where the certificate should be, and the certificate where the key should be.
    let err = Tls::load(TlsFiles { cert: files.key.clone(), key: files.key.clone() }).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
    let err = Tls::load(TlsFiles { cert: files.cert.clone(), key: files.cert.clone() }).unwrap_err();
    assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
    // Hostile bytes: binary noise and a truncated PEM block.
    std::fs::write(dir.path().join("noise.pem"), (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>()).unwrap();
    assert!(matches!(Tls::load(TlsFiles { cert: dir.path().join("noise.pem"), key: files.key.clone() }), Err(TlsError::NoCertificate { .. })));
    std::fs::write(dir.path().join("cut.pem"), &a.cert_pem[..a.cert_pem.len() / 2]).unwrap();
    assert!(matches!(Tls::load(TlsFiles { cert: dir.path().join("cut.pem"), key: files.key.clone() }), Err(TlsError::NoCertificate { .. })));

    std::fs::write(dir.path().join("b-key.pem"), &b.key_pem).unwrap();
    let err = Tls::load(TlsFiles { cert: files.cert.clone(), key: dir.path().join("b-key.pem") }).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    assert!(!err.is_retryable());
    assert!(Tls::load(files).is_ok());
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_by_the_watchdog_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_cert();
    let tls = Tls::load(write_files(dir.path(), &a)).unwrap();
    let limits = ConnectionLimits { header_timeout: Duration::from_millis(300), idle_timeout: Duration::from_secs(30), ..ConnectionLimits::default() };
    let (addr, shutdown, stats) = start(tls, limits).await;

    // The first bytes of a TLS record header, then nothing.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
    assert_eq!(get(&mut connect(addr, &a.der).await.unwrap()).await.0, StatusCode::OK, "served beside the stalled client");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stalled.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the stalled handshake was never closed");
    assert!(rest.is_empty());
    assert_eq!(stats.timed_out().0, 1, "closed as a slow header");
    shutdown.trigger();
}
