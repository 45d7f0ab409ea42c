//! TLS for the HTTP servers: a certificate chain and private key read from PEM files, checked
//! at start (a missing file, a file without a certificate or key, or a key that does not belong
//! to the certificate is a typed error and the server does not start), and reloaded in place
//! (`crm` calls [`Tls::reload`] on SIGHUP). A reload builds the whole new configuration first and
//! swaps it in only when it is valid, so a bad renewal keeps the old certificate serving. Each
//! handshake uses the configuration current when it starts; connections already open keep theirs.
//!
//! The handshake runs on the connection's own task under the same watchdog as HTTP: a client
//! that stalls mid-handshake is closed at the header timeout, one that never speaks at the idle
//! timeout. Only HTTP/1.1 is offered over ALPN (the servers speak HTTP/1.1).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::connection::WatchedStream;
use crate::MetricsRegistry;

/// Where the certificate chain (leaf first) and its private key are, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} holds no PEM certificate (expected `-----BEGIN CERTIFICATE-----`)")]
    NoCertificate { path: String },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: String },
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: String, key: String },
    #[error("the certificate or key is not usable for TLS: {0}")]
    Unusable(String),
}

impl TlsError {
    /// A file that could not be read may be readable later (a renewal still being written);
    /// wrong contents stay wrong until someone replaces them.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TlsError::Read { .. })
    }
}

/// The live TLS configuration of one server, swapped in place by [`Tls::reload`].
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    handshake_failures: AtomicU64,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads and checks the files; the error says which file is wrong and how.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let config = server_config(&files)?;
        Ok(Arc::new(Tls {
            files,
            current: RwLock::new(config),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            handshake_failures: AtomicU64::new(0),
        }))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again and serves the new certificate to new connections; on any error
    /// the certificate served so far stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        match server_config(&self.files) {
            Ok(config) => {
                *self.current.write() = config;
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(cert = %self.files.cert.display(), "tls certificate reloaded");
                Ok(())
            }
            Err(err) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %err, "tls reload failed; still serving the previous certificate");
                Err(err)
            }
        }
    }

    /// (successful reloads, failed reloads, failed handshakes) so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (self.reloads.load(Ordering::Relaxed), self.reload_failures.load(Ordering::Relaxed), self.handshake_failures.load(Ordering::Relaxed))
    }

    /// Mirrors the counters into `metrics` at every scrape.
    pub fn register(self: &Arc<Self>, metrics: &MetricsRegistry) {
        let reloads: Counter = Counter::default();
        let failures: Counter = Counter::default();
        let handshakes: Counter = Counter::default();
        metrics.register(|r| {
            r.register("tls_reloads", "TLS certificate reloads that took effect", reloads.clone());
            r.register("tls_reload_failures", "TLS certificate reloads refused (the previous certificate stayed)", failures.clone());
            r.register("tls_handshake_failures", "Connections closed because their TLS handshake failed", handshakes.clone());
        });
        let tls = Arc::clone(self);
        metrics.on_scrape(move || {
            let (ok, failed, handshake) = tls.counts();
            for (counter, value) in [(&reloads, ok), (&failures, failed), (&handshakes, handshake)] {
                counter.inc_by(value.saturating_sub(counter.get()));
            }
        });
    }

    /// Completes the server side of the handshake with the configuration current now.
    pub(crate) async fn accept(&self, stream: WatchedStream) -> io::Result<ServedStream> {
        let config = self.current.read().clone();
        match tokio_rustls::TlsAcceptor::from(config).accept(stream).await {
            Ok(stream) => Ok(ServedStream::Tls(Box::new(stream))),
            Err(err) => {
                self.handshake_failures.fetch_add(1, Ordering::Relaxed);
                Err(err)
            }
        }
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| TlsError::Read { path: display(path), message: e.to_string() });
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate { path: display(&files.cert) })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: display(&files.cert) });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey { path: display(&files.key) })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Unusable(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch { cert: display(&files.cert), key: display(&files.key) },
            other => TlsError::Unusable(other.to_string()),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A served connection's byte stream: plain TCP or TLS over it (both watched).
pub(crate) enum ServedStream {
    Plain(WatchedStream),
    Tls(Box<tokio_rustls::server::TlsStream<WatchedStream>>),
}

impl AsyncRead for ServedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServedStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServedStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServedStream::Plain(s) => Pin::new(s).poll_write(cx, data),
            ServedStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServedStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ServedStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServedStream::Plain(s) => s.is_write_vectored(),
            ServedStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServedStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ServedStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServedStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServedStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
