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
//! A user agent that is empty, contains a marker or matches a pattern is a bot. A fourth list,
//! `datacenter-asns.txt`, names hosting networks ([`is_datacenter_asn`]). The stream processor
//! adds woothee's crawler category and per-site signals (the datacenter ASN) on top; the visitor's profile
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
    /// The request came from a datacenter network of `datacenter-asns.txt` (judged by the
    /// processor, which knows the address's ASN, with [`is_datacenter_asn`]).
    DatacenterAsn,
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
const DATACENTER_ASNS: &str = include_str!("../data/datacenter-asns.txt");
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

/// The text a pattern matches if it is a plain literal (letters, digits, spaces and escaped
/// or harmless punctuation only), unescaped; `None` if it uses any regex syntax.
fn literal(pattern: &str) -> Option<String> {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) if escaped.is_ascii_punctuation() => out.push(escaped),
                _ => return None,
            },
            '.' | '^' | '$' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' => return None,
            _ => out.push(c),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// `pattern` without its look-around groups: a plain pattern that matches wherever the
/// original does (and sometimes more), to gate the backtracking ones.
fn without_lookaround(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if c == '\\' {
            let escape: String = rest.chars().take(2).collect();
            out.push_str(&escape);
            rest = &rest[escape.len()..];
        } else if ["(?=", "(?!", "(?<=", "(?<!"].iter().any(|open| rest.starts_with(open)) {
            // Skip to the group's closing parenthesis (escapes and classes aside).
            let (mut depth, mut class, mut escaped, mut end) = (0usize, false, false, rest.len());
            for (i, b) in rest.bytes().enumerate() {
                match (escaped, class, b) {
                    (true, _, _) => escaped = false,
                    (false, _, b'\\') => escaped = true,
                    (false, true, b']') => class = false,
                    (false, false, b'[') => class = true,
                    (false, false, b'(') => depth += 1,
                    (false, false, b')') => {
                        depth -= 1;
                        if depth == 0 {
                            end = i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            rest = &rest[end..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The compiled lists.
pub struct Detector {
    markers: AhoCorasick,
    /// The plain patterns that are literals (most of them), in one automaton.
    literals: AhoCorasick,
    /// The other plain patterns as one alternation; `None` without any (an empty alternation
    /// would match everything).
    plain: Option<regex::bytes::Regex>,
    fancy: Vec<fancy_regex::Regex>,
    /// The fancy patterns with their look-around removed: only a user agent this matches is
    /// tried against the backtracking ones (most browsers never are).
    fancy_gate: Option<regex::bytes::Regex>,
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
        let (literal_list, regex_list): (Vec<_>, Vec<_>) = plain_list.iter().map(|&(_, p)| (literal(p), p)).partition(|(l, _)| l.is_some());
        let literals = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(literal_list.iter().filter_map(|(l, _)| l.as_deref()))
            .map_err(|e| BotsError::Markers(e.to_string()))?;
        let alternation = |patterns: &mut dyn Iterator<Item = String>, file: &'static str| -> Result<Option<regex::bytes::Regex>, BotsError> {
            let joined: Vec<String> = patterns.map(|p| format!("(?:{p})")).collect();
            match joined.is_empty() {
                true => Ok(None),
                false => plain_regex(&joined.join("|")).map(Some).map_err(|e| BotsError::Alternation { file, message: e.to_string() }),
            }
        };
        let plain = alternation(&mut regex_list.iter().map(|(_, p)| p.to_string()), "patterns.txt")?;
        let fancy_list: Vec<(usize, &str)> = entries(fancy).collect();
        let fancy_gate = alternation(&mut fancy_list.iter().map(|(_, p)| without_lookaround(p)), "patterns-fancy.txt")?;
        let fancy = fancy_list
            .into_iter()
            .map(|(line, pattern)| {
                fancy_regex::RegexBuilder::new(&format!("(?i){pattern}"))
                    .backtrack_limit(BACKTRACK_LIMIT)
                    .build()
                    .map_err(|e| BotsError::Pattern { file: "patterns-fancy.txt", line, message: e.to_string() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Detector { markers: automaton, sizes: [marker_list.len(), plain_list.len(), fancy.len()], literals, plain, fancy, fancy_gate })
    }

    /// Why `user_agent` is a bot, or `None` for a browser (as far as the lists know).
    pub fn check(&self, user_agent: &str) -> Option<BotReason> {
        if user_agent.trim().is_empty() {
            return Some(BotReason::EmptyUserAgent);
        }
        if self.markers.is_match(user_agent) {
            return Some(BotReason::Marker);
        }
        let bytes = user_agent.as_bytes();
        let gated = || self.fancy_gate.as_ref().is_some_and(|g| g.is_match(bytes));
        if self.literals.is_match(bytes)
            || self.plain.as_ref().is_some_and(|r| r.is_match(bytes))
            || (gated() && self.fancy.iter().any(|r| r.is_match(user_agent).unwrap_or(false)))
        {
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

/// The autonomous systems of `datacenter-asns.txt`, ascending.
pub fn datacenter_asns() -> &'static [u32] {
    static ASNS: OnceLock<Vec<u32>> = OnceLock::new();
    ASNS.get_or_init(|| {
        let mut asns: Vec<u32> = entries(DATACENTER_ASNS)
            .map(|(line, entry)| entry.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("datacenter-asns.txt line {line} starts with no AS number (tested)")))
            .collect();
        asns.sort_unstable();
        asns.dedup();
        asns
    })
}

/// Whether `asn` is a datacenter or hosting network (servers, not people).
pub fn is_datacenter_asn(asn: u32) -> bool {
    datacenter_asns().binary_search(&asn).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datacenter_networks_are_listed_and_relays_people_browse_through_are_not() {
        assert!(datacenter_asns().len() >= 30);
        for cloud in [16509, 8075, 396982, 14061, 24940] {
            assert!(is_datacenter_asn(cloud), "{cloud}");
        }
        for people in [36183, 13335, 54113, 15169, 53813, 62044, 3320, 7922] {
            assert!(!is_datacenter_asn(people), "{people} carries real browsers");
        }
    }

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
    fn literals_and_gates_are_derived_exactly() {
        assert_eq!(literal(r"Googlebot\/2\.1"), Some("Googlebot/2.1".into()));
        assert_eq!(literal("360Spider"), Some("360Spider".into()));
        for not_literal in [r"^PTST\/", r"\d{1,10}", "a.b", "(x|y)", r"\bfoo"] {
            assert_eq!(literal(not_literal), None, "{not_literal}");
        }
        assert_eq!(without_lookaround("(?<! channel/|google/)google(?!(?:wv|app|/google| pixel))"), "google");
        assert_eq!(without_lookaround(r"(?<! cu)bots?(?:\b|_)"), r"bots?(?:\b|_)");
        assert_eq!(without_lookaround(r"java(?![\)(;])x"), "javax");
        // Every fancy pattern's gate matches wherever the pattern does, on its own examples.
        let detector = Detector::builtin();
        for ua in ["Mozilla/5.0 (compatible; Googlebot-News)", "my-scanner/1.0", "Java/1.8.0_151", "python http client", "newsbot"] {
            let fancy = detector.fancy.iter().any(|r| r.is_match(ua).unwrap_or(false));
            assert!(!fancy || detector.fancy_gate.as_ref().unwrap().is_match(ua.as_bytes()), "{ua}");
        }
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
