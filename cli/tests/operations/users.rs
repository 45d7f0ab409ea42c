//! `crm users reset-totp`: the break-glass path when the only admin lost both the device and the
//! recovery codes. Run on the stopped server's data directory, it removes the second factor (and
//! audits it); the admin then signs in with the password alone.

use std::process::Command;

use crate::common::{start, token, PASSWORD};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_resets_a_lost_second_factor_on_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = reqwest::Client::new();
    {
        let server = start(&data, &[]);
        let admin = token(&client, &server.base).await;
        let started: Value = client.post(format!("{}/api/v1/auth/totp/enroll", server.base)).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
        let secret = crm_api::totp::base32_decode(started["data"]["secret"].as_str().unwrap()).unwrap();
        let step = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / crm_api::totp::STEP_SECS;
        let code = format!("{:06}", crm_api::totp::code_at(&secret, step));
        let confirmed = client.post(format!("{}/api/v1/auth/totp/confirm", server.base)).bearer_auth(&admin).json(&json!({"code": code})).send().await.unwrap();
        assert_eq!(confirmed.status(), 200);
        let login: Value = client.post(format!("{}/api/v1/auth/login", server.base)).json(&json!({"username": "admin", "password": PASSWORD})).send().await.unwrap().json().await.unwrap();
        assert_eq!(login["data"]["second_factor"], "totp", "the password alone no longer signs in");
    }

    let reset = |user: &str| Command::new(env!("CARGO_BIN_EXE_crm")).args(["users", "reset-totp", user, "--data-dir"]).arg(&data).output().unwrap();
    let done = reset("admin");
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert!(String::from_utf8_lossy(&done.stdout).contains("removed the second factor of admin"));
    assert!(String::from_utf8_lossy(&reset("admin").stdout).contains("nothing changed"), "idempotent");
    let unknown = reset("nobody");
    assert!(!unknown.status.success() && String::from_utf8_lossy(&unknown.stderr).contains("no user named nobody"));

    let server = start(&data, &[]);
    let admin = token(&client, &server.base).await;
    let audit: Value = client.get(format!("{}/api/v1/auth/audit?username=admin", server.base)).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    let reset_entry = audit["data"].as_array().unwrap().iter().find(|e| e["event"] == "totp_reset").cloned().expect("the reset is audited");
    assert!(reset_entry["actor"].as_str().unwrap_or("").contains("command line"), "{reset_entry}");
}
