//! Bot user-agent detection from kept, maintained lists, one decision per user agent.
//!
//! Three lists under `data/`, compiled into the binary and refreshed by
//! `scripts/update-bot-list.sh` (which records the source packages, versions and integrity in
//! each file's header):
//! * `markers.txt`: automation markers (headless browsers, HTTP libraries, monitors, link
//!   previewers), matched as case-insensitive substrings with one Aho-Corasick automaton;
//! * `patterns.txt`: the crawler patterns of isbot and crawler-user-agents that the `regex`
//!   crate accepts, compiled as one case-insensitive alternation (linear time, no backtracking);
//! * `patterns-fancy.txt`: the few with look-around, each compiled with `fancy-regex` on its own,
//!   so backtracking never spreads to the rest.
//!
//! A user agent that is empty, contains a marker or matches a pattern is a bot. The stream
//! processor adds woothee's crawler category and per-site signals on top; the visitor's profile
//! then ORs its events' flags (see ARCHITECTURE "Bots").

use std::sync::OnceLock;

use aho_corasick::AhoCorasick;

/// Why a user agent was judged a bot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BotReason {
    /// No user agent, or only whitespace.
    EmptyUserAgent,
    /// An automation marker of `markers.txt`.
    Marker,
    /// A crawler pattern of `patterns.txt` or `patterns-fancy.txt`.
    Pattern,
}

/// A list that does not build. Never retryable: the list itself must change.
#[derive(Debug, thiserror::Error)]
pub enum BotsError {
    #[error("bot pattern on line {line} of {file} does not compile: {message}")]
    Pattern { file: &'static str, line: usize, message: String },
    #[error("bot patterns of {file} do not compile together: {message}")]
    Alternation { file: &'static str, message: String },
    #[error("bot markers do not build: {0}")]
    Markers(String),
}

impl BotsError {
    pub fn is_retryable(&self) -> bool {
        false
    }
}

const MARKERS: &str = include_str!("../data/markers.txt");
const PATTERNS: &str = include_str!("../data/patterns.txt");
const PATTERNS_FANCY: &str = include_str!("../data/patterns-fancy.txt");

/// The 35 markers the processor judged by before these lists (with woothee): kept as the
/// baseline the recall tests and benchmarks measure the lists against.
pub const LEGACY_MARKERS: [&str; 35] = [
    "bot", "crawl", "spider", "slurp", "headless", "phantomjs", "selenium", "webdriver", "puppeteer", "playwright",
    "python-requests", "python-urllib", "aiohttp", "httpx", "curl/", "wget/", "go-http-client", "java/", "okhttp",
    "axios", "node-fetch", "undici", "libwww", "httpclient", "scrapy", "lighthouse", "pingdom", "uptime", "monitor",
    "facebookexternalhit", "embedly", "preview", "validator", "feedfetcher", "archiver",
];

/// Memory the one alternation may take (compiled program and lazy DFA cache each).
const REGEX_LIMIT: usize = 64 << 20;

/// Fancy-regex backtracking steps per match: a pattern that would take more counts as no match.
const BACKTRACK_LIMIT: usize = 100_000;

/// The numbered entries of a list file: trimmed, without blank and `#` comment lines.
fn entries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, line)| (i + 1, line.trim())).filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

fn plain_regex(pattern: &str) -> Result<regex::bytes::Regex, regex::Error> {
    // Bytes and ASCII classes: user agents are ASCII, and Unicode case folding of ~1 700
    // alternatives would multiply the automaton for nothing.
    regex::bytes::RegexBuilder::new(pattern).case_insensitive(true).unicode(false).size_limit(REGEX_LIMIT).dfa_size_limit(REGEX_LIMIT).build()
}

/// The compiled lists.
pub struct Detector {
    markers: AhoCorasick,
    /// `None` without plain patterns (an empty alternation would match everything).
    plain: Option<regex::bytes::Regex>,
    fancy: Vec<fancy_regex::Regex>,
    sizes: [usize; 3],
}

impl Detector {
    /// The lists built into this binary, compiled once per process.
    pub fn builtin() -> &'static Detector {
        static BUILTIN: OnceLock<Detector> = OnceLock::new();
        BUILTIN.get_or_init(|| Detector::new(MARKERS, PATTERNS, PATTERNS_FANCY).expect("the built-in bot lists compile (tested)"))
    }

    /// Compiles lists in the files' format: one entry a line, `#` comments.
    pub fn new(markers: &str, patterns: &str, fancy: &str) -> Result<Detector, BotsError> {
        let marker_list: Vec<&str> = entries(markers).map(|(_, m)| m).collect();
        let automaton = AhoCorasick::builder().ascii_case_insensitive(true).build(&marker_list).map_err(|e| BotsError::Markers(e.to_string()))?;
        let plain_list: Vec<(usize, &str)> = entries(patterns).collect();
        for &(line, pattern) in &plain_list {
            plain_regex(pattern).map_err(|e| BotsError::Pattern { file: "patterns.txt", line, message: e.to_string() })?;
        }
        let alternation = plain_list.iter().map(|(_, p)| format!("(?:{p})")).collect::<Vec<_>>().join("|");
        let plain = match plain_list.is_empty() {
            true => None,
            false => Some(plain_regex(&alternation).map_err(|e| BotsError::Alternation { file: "patterns.txt", message: e.to_string() })?),
        };
        let fancy = entries(fancy)
            .map(|(line, pattern)| {
                fancy_regex::RegexBuilder::new(&format!("(?i){pattern}"))
                    .backtrack_limit(BACKTRACK_LIMIT)
                    .build()
                    .map_err(|e| BotsError::Pattern { file: "patterns-fancy.txt", line, message: e.to_string() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Detector { markers: automaton, sizes: [marker_list.len(), plain_list.len(), fancy.len()], plain, fancy })
    }

    /// Why `user_agent` is a bot, or `None` for a browser (as far as the lists know).
    pub fn check(&self, user_agent: &str) -> Option<BotReason> {
        if user_agent.trim().is_empty() {
            return Some(BotReason::EmptyUserAgent);
        }
        if self.markers.is_match(user_agent) {
            return Some(BotReason::Marker);
        }
        if self.plain.as_ref().is_some_and(|r| r.is_match(user_agent.as_bytes())) || self.fancy.iter().any(|r| r.is_match(user_agent).unwrap_or(false)) {
            return Some(BotReason::Pattern);
        }
        None
    }

    pub fn is_bot(&self, user_agent: &str) -> bool {
        self.check(user_agent).is_some()
    }

    /// Entries compiled: markers, plain patterns, fancy patterns.
    pub fn sizes(&self) -> [usize; 3] {
        self.sizes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `counts:` header line the update script writes, as (plain, fancy).
    fn header_counts() -> (usize, usize) {
        let line = PATTERNS.lines().find(|l| l.starts_with("# counts:")).expect("a counts header");
        let number = |name: &str| line.split(&format!("{name} ")).nth(1).and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()).unwrap().parse().unwrap();
        (number("plain"), number("fancy"))
    }

    #[test]
    fn the_builtin_lists_compile_whole_and_match_their_headers() {
        let started = std::time::Instant::now();
        let detector = Detector::new(MARKERS, PATTERNS, PATTERNS_FANCY).unwrap();
        let [markers, plain, fancy] = detector.sizes();
        eprintln!("compiled {markers} markers, {plain} + {fancy} patterns in {:?}", started.elapsed());
        assert_eq!((plain, fancy), header_counts(), "every generated line compiles");
        let listed: Vec<&str> = entries(MARKERS).map(|(_, m)| m).collect();
        assert!(LEGACY_MARKERS.iter().all(|m| listed.contains(m)), "markers.txt keeps every legacy marker");
        assert!(markers > LEGACY_MARKERS.len(), "{markers}");
        for header in ["# source: isbot@", "# source: crawler-user-agents@", "integrity sha512-", "licence "] {
            assert!(PATTERNS.contains(header) && PATTERNS_FANCY.contains(header), "the headers name the sources: {header}");
        }
    }

    #[test]
    fn crawlers_automation_and_empty_agents_are_bots() {
        let detector = Detector::builtin();
        for (ua, reason) in [
            ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", BotReason::Marker),
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36", BotReason::Marker),
            ("python-requests/2.31.0", BotReason::Marker),
            ("curl/8.4.0", BotReason::Marker),
            ("facebookexternalhit/1.1", BotReason::Marker),
            ("Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)", BotReason::Marker),
            ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)", BotReason::Marker),
            ("Mozilla/5.0 (compatible; Qwantify/2.4w; +https://www.qwant.com/)/2.4w", BotReason::Pattern),
            ("ia_archiver (+http://www.alexa.com/site/help/webmasters; crawler@alexa.com)", BotReason::Marker),
            ("Mediapartners-Google", BotReason::Pattern),
            ("", BotReason::EmptyUserAgent),
            ("   ", BotReason::EmptyUserAgent),
        ] {
            assert_eq!(detector.check(ua), Some(reason), "{ua:?}");
        }
    }

    #[test]
    fn browsers_are_not_bots() {
        let detector = Detector::builtin();
        for ua in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) GSA/320.0.648265941 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 OPR/86.0.0.0",
        ] {
            assert_eq!(detector.check(ua), None, "{ua}");
        }
    }

    #[test]
    fn a_bad_list_names_its_line_and_file() {
        let err = Detector::new("bot\n", "# header\nfine\nbroken(\n", "").err().expect("an unbalanced group is refused");
        assert!(matches!(err, BotsError::Pattern { file: "patterns.txt", line: 3, .. }), "{err}");
        let err = Detector::new("", "", "# x\n(?<!a\n").err().expect("a broken look-behind is refused");
        assert!(matches!(err, BotsError::Pattern { file: "patterns-fancy.txt", line: 2, .. }), "{err}");
        assert!(!err.is_retryable());
        let none = Detector::new("# nothing\n", "# nothing\n", "").unwrap();
        assert_eq!((none.check("curl/8"), none.check("")), (None, Some(BotReason::EmptyUserAgent)), "empty lists flag nothing else");
        let custom = Detector::new("# none\n", "^acme-checker/\n", "").unwrap();
        assert_eq!((custom.check("ACME-Checker/1.0"), custom.check("Mozilla/5.0 acme-checker/1")), (Some(BotReason::Pattern), None), "case-insensitive, anchors kept");
    }

    #[test]
    fn hostile_agents_are_judged_quickly_and_safely() {
        let detector = Detector::builtin();
        assert_eq!(detector.check(&"x".repeat(100_000)), Some(BotReason::Pattern), "100 KB without a space is no browser");
        let nested = format!("Mozilla/5.0 ({}) Chrome/131.0 Safari/537.36", "(a".repeat(20_000));
        assert_eq!(detector.check(&nested), None, "40 KB of open brackets neither panics nor backtracks away");
        let unicode = "Mozilla/5.0 (Windows NT 10.0) Chrome/131.0 Safari/537.36 ünïcödé ☃";
        assert_eq!(detector.check(unicode), None, "non-ASCII bytes are not a bot signal by themselves");
    }
}
