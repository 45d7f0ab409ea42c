//! Enrichment of one collected event into a [`StoredEvent`]: event time, URL facts, user agent
//! and bot flag, geo, and the anonymised IP that is all we keep of the address.

use std::net::IpAddr;
use std::str::FromStr;

use crm_schemas::{CollectedEvent, Event, StoredEvent};

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

pub struct Enricher {
    geo: GeoLookup,
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
        Enricher { geo, user_agents: UserAgentParser::default(), ip_storage }
    }

    /// Enriches `event` (already validated) collected as `collected`. Session id and intent
    /// signal are filled in later by the profile update, which also gets the URL facts.
    pub fn enrich(&mut self, event: Event, collected: &CollectedEvent) -> (StoredEvent, UrlFacts) {
        let ip = collected.ip.as_deref().and_then(|s| s.parse::<IpAddr>().ok());
        let geo = ip.map(|ip| self.geo.lookup(ip)).unwrap_or_default();
        let ua = self.user_agents.parse(collected.user_agent.as_deref().unwrap_or(""));
        let facts = url_facts(event.url.as_deref());
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
            path: facts.path.clone(),
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
}
