//! Secrets at rest on `crm up`: the data directory's key file is made at the first start, a
//! webhook secret never reaches the disk in plaintext, `crm secrets rotate` moves everything to a
//! new key, and a server without the key that sealed the store refuses to start.

use std::path::Path;
use std::process::Command;

use crate::common::{start, start_subcommand, token, PASSWORD};
use serde_json::{json, Value};

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map_while(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle)) {
            hits.push(path.display().to_string());
        }
    }
    hits
}

fn crm(args: &[&str], data: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_crm")).args(args).arg("--data-dir").arg(data).env("CRM_ADMIN_PASSWORD", PASSWORD).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_secrets_are_sealed_on_disk_and_a_rotation_moves_them_to_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    let secret = {
        let server = start(&data, &[]);
        let admin = token(&client, &server.base).await;
        let rule = json!({"site_id": "demo", "rule_id": "hot", "name": "Hot", "webhook_url": "https://hooks.example/crm", "condition": {"type": "score_crossed", "threshold": 80}});
        let created: Value = client.post(format!("{}/api/v1/alert-rules", server.base)).bearer_auth(&admin).json(&rule).send().await.unwrap().json().await.unwrap();
        created["data"]["secret"].as_str().expect("shown once").to_owned()
    };
    use std::os::unix::fs::PermissionsExt;
    let key_file = data.join("secrets.key");
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(files_containing(&data, secret.as_bytes()), Vec::<String>::new(), "the webhook secret is on disk in plaintext");

    let old = std::fs::read_to_string(&key_file).unwrap().trim().to_owned();
    let new = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
    let rotated = crm(&["secrets", "rotate", "--secrets-key", new, "--secrets-previous-keys", &old], &data);
    let stdout = String::from_utf8_lossy(&rotated.stdout);
    assert!(rotated.status.success(), "{stdout}{}", String::from_utf8_lossy(&rotated.stderr));
    assert!(stdout.contains("1 alert rule secret(s) re-sealed") && stdout.contains("token secret re-sealed"), "{stdout}");

    // The data directory's own key no longer opens the store: refused at start, not replaced.
    let refused = crm(&["up", "--listen", "127.0.0.1:0"], &data);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("is not configured"), "{stderr}");
    // With the new key it starts, and the admin signs in as before.
    let server = start_subcommand("up", &data, &["--rate-limit-ip", "0", "--secrets-key", new]);
    assert!(!token(&client, &server.base).await.is_empty());
}
