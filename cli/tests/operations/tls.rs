//! `crm up` over HTTPS: started with `--tls-cert`/`--tls-key`, it takes beacons and API calls on
//! TLS only, swaps its certificate on SIGHUP, and refuses to start with a key that is not the
//! certificate's (the error names the file).

use std::path::Path;
use std::process::Command;

use crate::common::{eventually, get, start, token, PASSWORD};
use serde_json::json;

struct Pair {
    cert: String,
    key: String,
}

fn make_pair() -> Pair {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("certificate");
    Pair { cert: made.cert.pem(), key: made.key_pair.serialize_pem() }
}

fn install(dir: &Path, pair: &Pair) {
    std::fs::write(dir.join("cert.pem"), &pair.cert).unwrap();
    std::fs::write(dir.join("key.pem"), &pair.key).unwrap();
}

/// A client that trusts exactly `pair` (no system roots), with no pooled connections, so every
/// request makes a new handshake.
fn trusting(pair: &Pair) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pair.cert.as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_up_serves_https_and_reloads_its_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (make_pair(), make_pair());
    install(dir.path(), &a);
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let server = start(&dir.path().join("data"), &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(server.base.starts_with("https://"), "{}", server.base);

    let client = trusting(&a);
    let event = json!({"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": "tls-1", "url": "https://x.example/"});
    let sent = client.post(format!("{}/v1/events", server.base)).body(event.to_string()).send().await.unwrap();
    assert_eq!(sent.status(), 202);
    let admin = token(&client, &server.base).await;
    eventually("the beacon sent over https to be stored", || async {
        let (status, body) = get(&client, format!("{}/api/v1/visitors/tls-1?site=demo", server.base), &admin).await;
        (status == 200).then_some(body)
    })
    .await;
    // Plain HTTP on the HTTPS port gets no answer.
    let plain = server.base.replace("https://", "http://");
    assert!(reqwest::Client::new().get(format!("{plain}/healthz")).send().await.is_err());

    install(dir.path(), &b);
    let status = Command::new("kill").args(["-HUP", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    eventually("the renewed certificate to be served", || async {
        trusting(&b).get(format!("{}/healthz", server.base)).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    assert!(trusting(&a).get(format!("{}/healthz", server.base)).send().await.is_err(), "the old certificate is no longer served");
    let metrics = trusting(&b).get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "crm_tls_reloads_total 1"), "{metrics}");
    assert!(metrics.lines().any(|l| l.starts_with("crm_tls_handshake_failures_total ") && !l.ends_with(" 0")), "the plain request and the old client failed their handshakes");
}

#[test]
fn a_key_that_is_not_the_certificates_stops_the_start_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (make_pair(), make_pair());
    std::fs::write(dir.path().join("cert.pem"), &a.cert).unwrap();
    std::fs::write(dir.path().join("other-key.pem"), &b.key).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_crm"))
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(dir.path().join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.path().join("other-key.pem"))
        .env("CRM_ADMIN_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("other-key.pem") && stderr.contains("does not belong"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"), "it must not start serving");

    // One flag without the other is a usage error.
    let output = Command::new(env!("CARGO_BIN_EXE_crm")).args(["api", "--tls-cert", "x.pem"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_without_tls_does_not_end_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir.path().join("data"), &[]);
    let status = Command::new("kill").args(["-HUP", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(server.child.try_wait().unwrap().is_none(), "crm up ended on SIGHUP");
    let health = reqwest::get(format!("{}/healthz", server.base)).await.unwrap();
    assert_eq!(health.status(), 200);
}
