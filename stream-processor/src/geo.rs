//! IP geolocation from MaxMind-format databases (`maxminddb`). Reads both the GeoIP2/GeoLite2
//! City layout (`country.iso_code`, `city.names.en`, `subdivisions`, `location`) and the flat
//! layout of the ip-location-db DB-IP City Lite files (`country_code`, `state1`, `city`,
//! `latitude`, `longitude`); an optional second database gives ASN and organisation.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use crm_schemas::Geo;
use maxminddb::Reader;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
#[error("cannot open geo database {path}: {message}")]
pub struct GeoError {
    pub path: String,
    pub message: String,
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    iso_code: Option<String>,
    #[serde(default)]
    names: BTreeMap<String, String>,
}

impl Named {
    fn english(&self) -> Option<String> {
        self.names.get("en").cloned()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CityField {
    Flat(String),
    Nested(Named),
}

#[derive(Deserialize)]
struct Location {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

#[derive(Deserialize)]
struct CityRecord {
    country: Option<Named>,
    country_code: Option<String>,
    city: Option<CityField>,
    subdivisions: Option<Vec<Named>>,
    state1: Option<String>,
    location: Option<Location>,
    latitude: Option<f64>,
    longitude: Option<f64>,
}

#[derive(Deserialize)]
struct AsnRecord {
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<String>,
}

/// City and ASN databases, each possibly split in several files (ip-location-db ships IPv4
/// and IPv6 in separate ones): a lookup takes the first file that knows the address.
pub struct GeoLookup {
    city: Vec<Reader<Vec<u8>>>,
    asn: Vec<Reader<Vec<u8>>>,
}

fn open(path: &Path) -> Result<Reader<Vec<u8>>, GeoError> {
    Reader::open_readfile(path).map_err(|e| GeoError { path: path.display().to_string(), message: e.to_string() })
}

impl GeoLookup {
    /// No databases: every lookup is empty.
    pub fn disabled() -> GeoLookup {
        GeoLookup { city: Vec::new(), asn: Vec::new() }
    }

    pub fn open<P: AsRef<Path>>(city: &[P], asn: &[P]) -> Result<GeoLookup, GeoError> {
        let all = |paths: &[P]| paths.iter().map(|p| open(p.as_ref())).collect::<Result<Vec<_>, _>>();
        Ok(GeoLookup { city: all(city)?, asn: all(asn)? })
    }

    pub fn from_bytes(city: Option<Vec<u8>>, asn: Option<Vec<u8>>) -> Result<GeoLookup, GeoError> {
        let read = |bytes: Vec<u8>| Reader::from_source(bytes).map_err(|e| GeoError { path: "<memory>".into(), message: e.to_string() });
        Ok(GeoLookup { city: city.map(read).into_iter().collect::<Result<_, _>>()?, asn: asn.map(read).into_iter().collect::<Result<_, _>>()? })
    }

    pub fn is_enabled(&self) -> bool {
        !self.city.is_empty() || !self.asn.is_empty()
    }

    /// Whether a city and an ASN database are loaded.
    pub fn coverage(&self) -> (bool, bool) {
        (!self.city.is_empty(), !self.asn.is_empty())
    }

    pub fn lookup(&self, ip: IpAddr) -> Geo {
        let mut geo = Geo::default();
        // An IPv4-only file answers an IPv6 address with an error: the next file is asked.
        if let Some(record) = self.city.iter().find_map(|reader| reader.lookup::<CityRecord>(ip).ok().flatten()) {
            geo.country = record.country.and_then(|c| c.iso_code).or(record.country_code);
            geo.region = record.subdivisions.and_then(|s| s.into_iter().next()).and_then(|s| s.english()).or(record.state1);
            geo.city = match record.city {
                Some(CityField::Flat(name)) => Some(name),
                Some(CityField::Nested(named)) => named.english(),
                None => None,
            };
            let (lat, lon) = match record.location {
                Some(location) => (location.latitude, location.longitude),
                None => (record.latitude, record.longitude),
            };
            geo.lat = lat;
            geo.lon = lon;
        }
        if let Some(record) = self.asn.iter().find_map(|reader| reader.lookup::<AsnRecord>(ip).ok().flatten()) {
            geo.asn = record.autonomous_system_number;
            geo.org = record.autonomous_system_organization;
        }
        geo
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Tiny mmdb files generated in tests (no downloads).
    use maxminddb_writer::paths::IpAddrWithMask;
    use maxminddb_writer::Database;
    use serde::Serialize;

    #[derive(Serialize)]
    struct FlatCity<'a> {
        country_code: &'a str,
        state1: &'a str,
        city: &'a str,
        latitude: f64,
        longitude: f64,
    }

    #[derive(Serialize)]
    struct Names<'a> {
        en: &'a str,
    }
    #[derive(Serialize)]
    struct Country<'a> {
        iso_code: &'a str,
        names: Names<'a>,
    }
    #[derive(Serialize)]
    struct City<'a> {
        names: Names<'a>,
    }
    #[derive(Serialize)]
    struct Location {
        latitude: f64,
        longitude: f64,
    }
    #[derive(Serialize)]
    struct GeoIp2City<'a> {
        country: Country<'a>,
        city: City<'a>,
        subdivisions: Vec<Country<'a>>,
        location: Location,
    }
    #[derive(Serialize)]
    struct Asn<'a> {
        autonomous_system_number: u32,
        autonomous_system_organization: &'a str,
    }

    fn finish(db: Database) -> Vec<u8> {
        db.write_to(Vec::new()).expect("write mmdb")
    }

    /// 81.2.69.0/24 → Berlin (DB-IP flat layout); 89.160.20.0/24 → Linköping (GeoIP2 layout).
    pub fn city_db() -> Vec<u8> {
        let mut db = Database::default();
        let berlin = db
            .insert_value(FlatCity { country_code: "DE", state1: "Berlin", city: "Berlin", latitude: 52.52, longitude: 13.40 })
            .expect("value");
        db.insert_node("81.2.69.0/24".parse::<IpAddrWithMask>().expect("cidr"), berlin);
        let linkoping = db
            .insert_value(GeoIp2City {
                country: Country { iso_code: "SE", names: Names { en: "Sweden" } },
                city: City { names: Names { en: "Linköping" } },
                subdivisions: vec![Country { iso_code: "E", names: Names { en: "Östergötland County" } }],
                location: Location { latitude: 58.41, longitude: 15.62 },
            })
            .expect("value");
        db.insert_node("89.160.20.0/24".parse::<IpAddrWithMask>().expect("cidr"), linkoping);
        finish(db)
    }

    /// 81.2.69.0/24 → AS 64500 "Example Corp".
    pub fn asn_db() -> Vec<u8> {
        let mut db = Database::default();
        let asn = db.insert_value(Asn { autonomous_system_number: 64500, autonomous_system_organization: "Example Corp" }).expect("value");
        db.insert_node("81.2.69.0/24".parse::<IpAddrWithMask>().expect("cidr"), asn);
        finish(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_city_layouts_and_asn() {
        let geo = GeoLookup::from_bytes(Some(fixtures::city_db()), Some(fixtures::asn_db())).unwrap();
        let berlin = geo.lookup("81.2.69.142".parse().unwrap());
        assert_eq!(berlin.country.as_deref(), Some("DE"));
        assert_eq!(berlin.city.as_deref(), Some("Berlin"));
        assert_eq!(berlin.region.as_deref(), Some("Berlin"));
        assert_eq!(berlin.asn, Some(64500));
        assert_eq!(berlin.org.as_deref(), Some("Example Corp"));
        assert!((berlin.lat.unwrap() - 52.52).abs() < 1e-6);
        let sweden = geo.lookup("89.160.20.112".parse().unwrap());
        assert_eq!(sweden.country.as_deref(), Some("SE"));
        assert_eq!(sweden.city.as_deref(), Some("Linköping"));
        assert_eq!(sweden.region.as_deref(), Some("Östergötland County"));
        assert!(sweden.asn.is_none());
        assert_eq!(geo.lookup("10.0.0.1".parse().unwrap()), Geo::default());
    }

    #[test]
    fn disabled_and_broken_databases() {
        assert_eq!(GeoLookup::disabled().lookup("81.2.69.142".parse().unwrap()), Geo::default());
        assert!(GeoLookup::from_bytes(Some(b"not an mmdb".to_vec()), None).is_err());
        assert!(GeoLookup::open(&[Path::new("/nonexistent/city.mmdb")], &[]).is_err());
    }
}
