//! Helpers shared by the end-to-end tests: start the real `crm` binary, log in, poll.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const PASSWORD: &str = "e2e-admin-password";
pub const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `crm up` on port 0 and waits for its "listening on" line. The address rate limit is
/// off unless `extra` sets one.
pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
    let mut args = if extra.contains(&"--rate-limit-ip") { vec![] } else { vec!["--rate-limit-ip", "0"] };
    args.extend_from_slice(extra);
    start_subcommand("up", data_dir, &args)
}

/// Starts `crm <subcommand>` on port 0 and waits for its "listening on" line.
pub fn start_subcommand(subcommand: &str, data_dir: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crm"))
        .args([subcommand, "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("CRM_ADMIN_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crm");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(address) = line.split("listening on ").nth(1) {
                let _ = sender.send(address.trim().to_owned());
            }
        }
    });
    let base = receiver.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("crm {subcommand} did not start listening"));
    Server { child, base }
}

pub async fn token(client: &reqwest::Client, base: &str) -> String {
    let reply: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["data"]["access_token"].as_str().expect("token").to_owned()
}

pub async fn get(client: &reqwest::Client, url: String, token: &str) -> (u16, Value) {
    let response = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls until `check` returns Some, failing after 30 s.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A MaxMind-format city database in DB-IP's flat layout: each `(cidr, country, city)` answers
/// that country and city (the city doubles as region). `version` is the tree's IP version.
pub fn city_mmdb(version: maxminddb_writer::metadata::IpVersion, networks: &[(&str, &str, &str)]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct FlatCity<'a> {
        country_code: &'a str,
        state1: &'a str,
        city: &'a str,
        latitude: f64,
        longitude: f64,
    }
    let mut db = maxminddb_writer::Database::default();
    db.metadata.ip_version = version;
    for (cidr, country, city) in networks {
        let value = db.insert_value(FlatCity { country_code: country, state1: city, city, latitude: 52.52, longitude: 13.4 }).unwrap();
        db.insert_node(cidr.parse::<maxminddb_writer::paths::IpAddrWithMask>().unwrap(), value);
    }
    db.write_to(Vec::new()).unwrap()
}
