//! Enrichment of one collected event into a [`StoredEvent`]: event time, URL facts, user agent
//! and bot flag, geo, and the anonymised IP that is all we keep of the address. Geo answers and
//! URL facts sit behind bounded caches: a visitor's events come from one address, and a site's
//! traffic is mostly a small set of page URLs.

use std::net::IpAddr;
use std::str::FromStr;

use crm_schemas::{CollectedEvent, Event, Geo, StoredEvent};

use crate::cache::ClearingCache;
use crate::urls::{url_facts, UrlFacts};
use crate::{GeoLookup, UserAgentParser};

/// How much of the client IP is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpStorage {
    /// IPv4 /24 and IPv6 /48 (the default).
    Anonymized,
    Full,
    None,
}

impl FromStr for IpStorage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "anonymized" => Ok(IpStorage::Anonymized),
            "full" => Ok(IpStorage::Full),
            "none" => Ok(IpStorage::None),
            other => Err(format!("unknown ip storage mode {other:?}")),
        }
    }
}

/// Client clocks are trusted within this window around the receive time.
const MAX_PAST_SKEW_MS: i64 = 7 * 86_400_000;
const MAX_FUTURE_SKEW_MS: i64 = 60_000;

/// Addresses whose geo answer is kept (a few MB; emptied when full, see `cache.rs`).
const GEO_CACHE_CAPACITY: usize = 20_000;
/// Page URLs whose facts are kept (URLs are at most a few KiB; typical ones ~100 bytes).
const URL_CACHE_CAPACITY: usize = 10_000;

pub struct Enricher {
    geo: GeoLookup,
    geo_cache: ClearingCache<IpAddr, Geo>,
    url_cache: ClearingCache<String, UrlFacts>,
    user_agents: UserAgentParser,
    ip_storage: IpStorage,
}

pub fn anonymize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
    }
}

/// The analytics time of an event: the client's clock when plausible, else the receive time.
pub fn event_time(client_ts: Option<i64>, received_at_ms: i64) -> i64 {
    match client_ts {
        Some(ts) if ts >= received_at_ms - MAX_PAST_SKEW_MS && ts <= received_at_ms + MAX_FUTURE_SKEW_MS => ts,
        _ => received_at_ms,
    }
}

impl Enricher {
    pub fn new(geo: GeoLookup, ip_storage: IpStorage) -> Enricher {
        Enricher {
            geo,
            geo_cache: ClearingCache::new(GEO_CACHE_CAPACITY),
            url_cache: ClearingCache::new(URL_CACHE_CAPACITY),
            user_agents: UserAgentParser::default(),
            ip_storage,
        }
    }

    /// The geo answer for `ip`, from the cache when this address was looked up recently. An
    /// mmdb lookup decodes the record into owned strings (≈ 7 K instructions); a hit clones them.
    fn geo(&mut self, ip: IpAddr) -> Geo {
        if !self.geo.is_enabled() {
            return Geo::default();
        }
        let geo = &self.geo;
        self.geo_cache.get_or_insert_with(&ip, |ip| *ip, || geo.lookup(ip))
    }

    /// The facts of a page URL, from the cache when the URL was seen recently (parsing is
    /// ≈ 3.8 K instructions; a hit hashes the URL and clones a few short strings).
    fn url_facts(&mut self, url: Option<&str>) -> UrlFacts {
        let Some(url) = url else { return url_facts(None) };
        self.url_cache.get_or_insert_with(url, str::to_owned, || url_facts(Some(url)))
    }

    /// Enriches `event` (already validated) collected as `collected`. Session id and intent
    /// signal are filled in later by the profile update, which also gets the URL facts.
    pub fn enrich(&mut self, event: Event, collected: &CollectedEvent) -> (StoredEvent, UrlFacts) {
        let ip = collected.ip.as_deref().and_then(|s| s.parse::<IpAddr>().ok());
        let geo = ip.map(|ip| self.geo(ip)).unwrap_or_default();
        let ua = self.user_agents.parse(collected.user_agent.as_deref().unwrap_or(""));
        let mut facts = self.url_facts(event.url.as_deref());
        let stored_ip = match (self.ip_storage, ip) {
            (IpStorage::Full, Some(ip)) => Some(ip.to_string()),
            (IpStorage::Anonymized, Some(ip)) => Some(anonymize(ip).to_string()),
            _ => None,
        };
        let stored = StoredEvent {
            event_id: event.event_id,
            site_id: event.site_id,
            visitor_id: event.visitor_id.unwrap_or_default(),
            session_id: String::new(),
            client_session_id: event.session_id,
            ts_ms: event_time(event.ts_ms, collected.received_at_ms),
            received_at_ms: collected.received_at_ms,
            url: event.url,
            // The profile update reads the path from the stored event, not from the facts.
            path: facts.path.take(),
            referrer: event.referrer,
            title: event.title,
            props: event.props,
            body: event.body,
            ip: stored_ip,
            geo,
            device: ua.device.clone(),
            is_bot: ua.is_bot,
            intent_signal: None,
        };
        (stored, facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymization_keeps_the_network_only() {
        assert_eq!(anonymize("203.0.113.77".parse().unwrap()).to_string(), "203.0.113.0");
        assert_eq!(anonymize("2001:db8:abcd:12:1:2:3:4".parse().unwrap()).to_string(), "2001:db8:abcd::");
    }

    #[test]
    fn implausible_client_clocks_fall_back_to_receive_time() {
        let now = 1_700_000_000_000;
        assert_eq!(event_time(Some(now - 5_000), now), now - 5_000);
        assert_eq!(event_time(Some(now + 3_600_000), now), now);
        assert_eq!(event_time(Some(1), now), now);
        assert_eq!(event_time(None, now), now);
    }

    #[test]
    fn enrich_fills_geo_device_and_truncated_ip() {
        let geo = GeoLookup::from_bytes(Some(crate::geo::fixtures::city_db()), None).unwrap();
        let mut enricher = Enricher::new(geo, IpStorage::Anonymized);
        let wire: crm_schemas::WireEvent = serde_json::from_str(
            r#"{"v":1,"type":"pageview","site_id":"s","visitor_id":"v","url":"https://a.example/pricing?utm_source=x"}"#,
        )
        .unwrap();
        let collected = CollectedEvent {
            event: wire.clone(),
            received_at_ms: 1_700_000_000_000,
            ip: Some("81.2.69.142".into()),
            user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36".into()),
        };
        let event = wire.validate(&crm_schemas::Limits::default()).unwrap();
        let (stored, _) = enricher.enrich(event, &collected);
        assert_eq!(stored.ip.as_deref(), Some("81.2.69.0"));
        assert_eq!(stored.geo.city.as_deref(), Some("Berlin"));
        assert_eq!(stored.device.browser, "Chrome");
        assert_eq!(stored.path.as_deref(), Some("/pricing"));
        assert!(!stored.is_bot);
    }

    #[test]
    fn cached_geo_answers_match_the_database_and_the_cache_is_bounded() {
        let geo = GeoLookup::from_bytes(Some(crate::geo::fixtures::city_db()), None).unwrap();
        let reference = GeoLookup::from_bytes(Some(crate::geo::fixtures::city_db()), None).unwrap();
        let mut enricher = Enricher::new(geo, IpStorage::Anonymized);
        let berlin: IpAddr = "81.2.69.142".parse().unwrap();
        let unknown: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(enricher.geo(berlin), reference.lookup(berlin));
            assert_eq!(enricher.geo(unknown), reference.lookup(unknown));
        }
        assert_eq!(enricher.geo(berlin).city.as_deref(), Some("Berlin"));
        assert_eq!(enricher.geo_cache.len(), 2);
        for i in 0..(GEO_CACHE_CAPACITY as u32 + 10) {
            enricher.geo(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        }
        assert!(enricher.geo_cache.len() <= GEO_CACHE_CAPACITY);
        assert_eq!(enricher.geo(berlin).city.as_deref(), Some("Berlin"));
    }

    #[test]
    fn cached_url_facts_match_a_fresh_parse_and_the_cache_is_bounded() {
        let mut enricher = Enricher::new(GeoLookup::disabled(), IpStorage::Anonymized);
        let urls = ["https://Shop.example/pricing?utm_source=li&utm_campaign=q4", "https://a.example/?gclid=abc", "not a url", ""];
        for _ in 0..2 {
            for url in urls {
                let (cached, fresh) = (enricher.url_facts(Some(url)), url_facts(Some(url)));
                assert_eq!((cached.host, cached.path, cached.utm), (fresh.host, fresh.path, fresh.utm), "{url}");
            }
        }
        assert_eq!(enricher.url_facts(None).path, None);
        for i in 0..(URL_CACHE_CAPACITY + 10) {
            enricher.url_facts(Some(&format!("https://a.example/p/{i}")));
        }
        assert!(enricher.url_cache.len() <= URL_CACHE_CAPACITY);
        assert_eq!(enricher.url_facts(Some(urls[0])).utm.campaign.as_deref(), Some("q4"));
    }

    #[test]
    fn disabled_geo_keeps_no_cache() {
        let mut enricher = Enricher::new(GeoLookup::disabled(), IpStorage::Anonymized);
        assert_eq!(enricher.geo("81.2.69.142".parse().unwrap()), Geo::default());
        assert_eq!(enricher.geo_cache.len(), 0);
    }
}
