//! URL facts used by sessions and scoring: path, UTM parameters, click ids and referrer host.

use crm_schemas::Utm;
use url::Url;

#[derive(Clone, Debug, Default)]
pub struct UrlFacts {
    pub host: Option<String>,
    pub path: Option<String>,
    pub utm: Utm,
}

/// Extracts path and UTM parameters from a page URL (props may also carry UTM values).
pub fn url_facts(url: Option<&str>) -> UrlFacts {
    let Some(parsed) = url.and_then(|u| Url::parse(u).ok()) else {
        return UrlFacts { host: None, path: None, utm: Utm::default() };
    };
    let mut utm = Utm::default();
    for (key, value) in parsed.query_pairs() {
        if value.is_empty() {
            continue;
        }
        let slot = match key.as_ref() {
            "utm_source" => &mut utm.source,
            "utm_medium" => &mut utm.medium,
            "utm_campaign" => &mut utm.campaign,
            "utm_term" => &mut utm.term,
            "utm_content" => &mut utm.content,
            _ => continue,
        };
        let mut text = value.into_owned();
        text.truncate(text.char_indices().nth(100).map_or(text.len(), |(i, _)| i));
        *slot = Some(text);
    }
    if utm.source.is_none() {
        // Paid click ids imply their network when no utm_source is given.
        for (key, source, medium) in [("gclid", "google", "cpc"), ("fbclid", "facebook", "paid_social"), ("li_fat_id", "linkedin", "paid_social")] {
            if parsed.query_pairs().any(|(k, _)| k == key) {
                utm.source = Some(source.into());
                utm.medium.get_or_insert_with(|| medium.into());
                break;
            }
        }
    }
    UrlFacts { host: parsed.host_str().map(str::to_ascii_lowercase), path: Some(parsed.path().to_owned()), utm }
}

/// The referrer's host, or `None` for direct traffic and internal navigation.
pub fn referrer_host(referrer: Option<&str>, page_host: Option<&str>) -> Option<String> {
    let host = Url::parse(referrer?).ok()?.host_str()?.to_ascii_lowercase();
    let host = host.strip_prefix("www.").map(str::to_owned).unwrap_or(host);
    let page = page_host.map(|h| h.strip_prefix("www.").unwrap_or(h));
    (Some(host.as_str()) != page).then_some(host)
}

/// A path glob compiled once: `*` matches any run of characters, comparison ignores ASCII case.
/// The literal runs between stars get a prebuilt substring searcher each.
#[derive(Clone, Debug)]
pub struct Glob {
    first: String,
    middles: Vec<memchr::memmem::Finder<'static>>,
    /// `None` when the pattern has no star (an exact match).
    last: Option<String>,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let lower = pattern.to_ascii_lowercase();
        let mut parts: Vec<&str> = lower.split('*').collect();
        let first = parts.remove(0).to_owned();
        let last = parts.pop().map(str::to_owned);
        let middles = parts.into_iter().filter(|p| !p.is_empty()).map(|p| memchr::memmem::Finder::new(p).into_owned()).collect();
        Glob { first, middles, last }
    }

    /// Matches an already lower-cased text.
    pub fn matches_lower(&self, text: &str) -> bool {
        let Some(last) = &self.last else { return self.first == text };
        let Some(mut rest) = text.strip_prefix(self.first.as_str()) else { return false };
        for middle in &self.middles {
            match middle.find(rest.as_bytes()) {
                // The needle is valid UTF-8, so its end is a character boundary.
                Some(at) => rest = &rest[at + middle.needle().len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last.as_str())
    }
}

/// Glob match where `*` matches any run of characters (case-insensitive).
#[cfg(test)]
pub fn glob_match(pattern: &str, text: &str) -> bool {
    Glob::new(pattern).matches_lower(&text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utm_and_click_ids() {
        let facts = url_facts(Some("https://Shop.example/pricing?utm_source=li&utm_campaign=q4&x=1"));
        assert_eq!(facts.host.as_deref(), Some("shop.example"));
        assert_eq!(facts.path.as_deref(), Some("/pricing"));
        assert_eq!(facts.utm.source.as_deref(), Some("li"));
        assert_eq!(facts.utm.campaign.as_deref(), Some("q4"));
        let paid = url_facts(Some("https://a.example/?gclid=abc"));
        assert_eq!((paid.utm.source.as_deref(), paid.utm.medium.as_deref()), (Some("google"), Some("cpc")));
        assert!(url_facts(Some("not a url")).path.is_none());
    }

    #[test]
    fn referrers() {
        assert_eq!(referrer_host(Some("https://www.google.com/search?q=x"), Some("a.example")).as_deref(), Some("google.com"));
        assert_eq!(referrer_host(Some("https://a.example/other"), Some("a.example")), None);
        assert_eq!(referrer_host(Some("https://www.a.example/other"), Some("a.example")), None);
        assert_eq!(referrer_host(None, Some("a.example")), None);
        assert_eq!(referrer_host(Some("garbage"), None), None);
    }

    #[test]
    fn globs() {
        assert!(glob_match("*/pricing*", "/pricing"));
        assert!(glob_match("*/pricing*", "/en/pricing/enterprise"));
        assert!(!glob_match("*/pricing*", "/blog/price"));
        assert!(glob_match("/docs", "/DOCS"));
        assert!(!glob_match("/docs", "/docs/x"));
        assert!(glob_match("*case-stud*", "/resources/case-study-acme"));
        assert!(glob_match("/a*b*c", "/aXXbYYc"));
        assert!(!glob_match("/a*b*c", "/aXXcYYb"));
        assert!(glob_match("*", "/anything"));
        assert!(glob_match("**", ""));
        assert!(glob_match("/a**b", "/ab"));
        assert!(!glob_match("/ab*ba", "/aba"));
        assert!(glob_match("*/é*", "/x/é/y"));
        assert!(!glob_match("/docs*", "/doc"));
    }
}
