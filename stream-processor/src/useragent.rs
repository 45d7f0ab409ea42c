//! User-agent parsing (woothee) behind a bounded cache, and the per-request bot decision:
//! woothee's crawler category, or the maintained lists of `crm-bots` (crawler patterns of isbot
//! and crawler-user-agents, automation markers), or no user agent at all.

use std::sync::Arc;

use crm_schemas::Device;

use crate::cache::ClearingCache;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UaInfo {
    pub device: Device,
    pub is_bot: bool,
}

pub struct UserAgentParser {
    parser: woothee::parser::Parser,
    cache: ClearingCache<String, Arc<UaInfo>>,
}

impl Default for UserAgentParser {
    fn default() -> Self {
        UserAgentParser::new(20_000)
    }
}

fn known(value: &str) -> String {
    if value == woothee::woothee::VALUE_UNKNOWN { String::new() } else { value.to_owned() }
}

fn parse_with(parser: &woothee::parser::Parser, user_agent: &str) -> UaInfo {
    if user_agent.trim().is_empty() {
        return UaInfo { device: Device { category: "unknown".into(), ..Device::default() }, is_bot: true };
    }
    let listed = crm_bots::Detector::builtin().is_bot(user_agent);
    let device = match parser.parse(user_agent) {
        Some(result) => Device {
            browser: known(result.name),
            browser_version: known(result.version),
            os: known(result.os),
            os_version: known(&result.os_version),
            category: if result.category == woothee::woothee::VALUE_UNKNOWN { "unknown".into() } else { result.category.to_owned() },
        },
        None => Device { category: "unknown".into(), ..Device::default() },
    };
    let is_bot = listed || device.category == "crawler";
    UaInfo { device, is_bot }
}

impl UserAgentParser {
    pub fn new(capacity: usize) -> UserAgentParser {
        UserAgentParser { parser: woothee::parser::Parser::new(), cache: ClearingCache::new(capacity) }
    }

    /// Parses without the cache (used by benchmarks to measure the cold path).
    pub fn parse_uncached(&self, user_agent: &str) -> UaInfo {
        parse_with(&self.parser, user_agent)
    }

    pub fn parse(&mut self, user_agent: &str) -> Arc<UaInfo> {
        let parser = &self.parser;
        self.cache.get_or_insert_with(user_agent, str::to_owned, || Arc::new(parse_with(parser, user_agent)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";

    #[test]
    fn browsers_and_devices() {
        let mut parser = UserAgentParser::default();
        let chrome = parser.parse(CHROME);
        assert_eq!((chrome.device.browser.as_str(), chrome.device.category.as_str(), chrome.is_bot), ("Chrome", "pc", false));
        assert_eq!(chrome.device.os, "Windows 10");
        let phone = parser.parse(IPHONE);
        assert_eq!((phone.device.category.as_str(), phone.is_bot), ("smartphone", false));
    }

    #[test]
    fn bots_of_every_kind() {
        let mut parser = UserAgentParser::default();
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
            "python-requests/2.31.0",
            "curl/8.4.0",
            "facebookexternalhit/1.1",
            "",
        ] {
            assert!(parser.parse(ua).is_bot, "{ua:?} should be a bot");
        }
    }

    #[test]
    fn cache_is_bounded() {
        let mut parser = UserAgentParser::new(3);
        for i in 0..10 {
            parser.parse(&format!("{CHROME} build/{i}"));
        }
        assert!(parser.cache.len() <= 3);
    }
}
