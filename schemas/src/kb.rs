//! Knowledge-base and chat records: help-centre articles with their version history and stored
//! passage embeddings, each site's chat settings (greeting, qualification questions, handoff
//! rules), chat conversations and their messages, and the daily counters behind KB analytics
//! (views, helpfulness, searches, content gaps, deflections, handoffs).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::forms::{valid_key, FieldError};

/// The largest markdown body an article may have.
pub const MAX_ARTICLE_BODY_BYTES: usize = 200 * 1024;
/// The most tags an article may carry.
pub const MAX_ARTICLE_TAGS: usize = 20;
/// The longest chat message a visitor or agent may send, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2_000;
/// The longest content-gap query kept, in characters.
pub const MAX_GAP_QUERY_CHARS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArticleStatus {
    Draft,
    Published,
}

/// A help-centre article as it is now. Every write is also kept as an [`ArticleVersion`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Article {
    pub site_id: String,
    /// `art_` + 12 hex digits; stable across edits and slug changes.
    pub article_id: String,
    pub slug: String,
    pub title: String,
    pub body_md: String,
    /// `body_md` rendered and sanitised when written.
    pub body_html: String,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub status: ArticleStatus,
    /// 1 for the first write, +1 per write; edits name the version they change.
    pub version: u32,
    pub created_at_ms: i64,
    pub created_by: String,
    pub updated_at_ms: i64,
    pub updated_by: String,
    pub published_at_ms: Option<i64>,
    /// Soft delete: the article leaves the help centre and search but keeps its history.
    pub deleted_at_ms: Option<i64>,
}

impl Article {
    /// Published and not deleted: on the help centre and in public search.
    pub fn is_live(&self) -> bool {
        self.status == ArticleStatus::Published && self.deleted_at_ms.is_none()
    }

    /// Every problem with the fields a person writes (the stored fields are set by the API).
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !valid_key(&self.site_id) {
            errors.push(FieldError::new("site_id", "invalid_id", "site_id must be 1–64 of [A-Za-z0-9_.-]"));
        }
        if !valid_slug(&self.slug) {
            errors.push(FieldError::new("slug", "invalid_slug", "slugs are 1–100 of lowercase letters, digits and single hyphens"));
        }
        if self.title.trim().is_empty() || self.title.chars().count() > 200 || self.title.contains(['\n', '\r']) {
            errors.push(FieldError::new("title", "invalid_value", "title must be 1–200 characters on one line"));
        }
        if self.body_md.len() > MAX_ARTICLE_BODY_BYTES {
            errors.push(FieldError::new("body_md", "too_large", format!("body_md is at most {MAX_ARTICLE_BODY_BYTES} bytes")));
        }
        if let Some(category) = &self.category {
            if !valid_slug(category) {
                errors.push(FieldError::new("category", "invalid_slug", "categories are 1–100 of lowercase letters, digits and single hyphens"));
            }
        }
        if self.tags.len() > MAX_ARTICLE_TAGS {
            errors.push(FieldError::new("tags", "invalid_value", format!("at most {MAX_ARTICLE_TAGS} tags")));
        }
        for (index, tag) in self.tags.iter().enumerate() {
            if !valid_key(tag) {
                errors.push(FieldError::new(&format!("tags[{index}]"), "invalid_id", "tags are 1–64 of [A-Za-z0-9_.-]"));
            }
        }
        errors
    }

    /// The history row for this state of the article.
    pub fn version_row(&self, author: &str, at_ms: i64) -> ArticleVersion {
        ArticleVersion {
            site_id: self.site_id.clone(),
            article_id: self.article_id.clone(),
            version: self.version,
            slug: self.slug.clone(),
            title: self.title.clone(),
            body_md: self.body_md.clone(),
            category: self.category.clone(),
            tags: self.tags.clone(),
            status: self.status,
            deleted: self.deleted_at_ms.is_some(),
            author: author.to_owned(),
            at_ms,
        }
    }
}

/// `^[a-z0-9]+(-[a-z0-9]+)*$`, at most 100 characters.
pub fn valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// A slug from a title: ASCII letters and digits lowercased, every other run becomes one hyphen,
/// cut to 80 characters at a hyphen where possible. Empty when the title has no ASCII letter or digit.
pub fn slugify(title: &str) -> String {
    let mut slug = String::with_capacity(title.len());
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    if slug.len() > 80 {
        slug.truncate(80);
        if let Some(cut) = slug.rfind('-').filter(|&i| i > 40) {
            slug.truncate(cut);
        }
    }
    slug.trim_end_matches('-').to_owned()
}

/// One write of an article, kept for its history (who changed what, when).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArticleVersion {
    pub site_id: String,
    pub article_id: String,
    pub version: u32,
    pub slug: String,
    pub title: String,
    pub body_md: String,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub status: ArticleStatus,
    pub deleted: bool,
    pub author: String,
    pub at_ms: i64,
}

/// An article's passage embeddings as computed by one model from one text (so a restart reuses
/// them when neither changed, and re-embeds when either did).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArticleEmbedding {
    pub site_id: String,
    pub article_id: String,
    /// Which model made them (the search crate's model id).
    pub model: String,
    /// A hash of the passages they embed.
    pub content_hash: String,
    pub dimensions: u32,
    /// The passages' vectors back to back (`len = passages × dimensions`).
    pub vectors: Vec<f32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    /// The visitor is talking to the assistant.
    Open,
    /// Handed to a person and waiting for (or in) their reply.
    HandedOff,
    /// Closed with the visitor's question answered.
    Resolved,
    /// Closed without an answer (the visitor left, or staff closed it).
    Closed,
}

/// A chat conversation of one visitor on one site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub site_id: String,
    /// A UUID.
    pub conversation_id: String,
    pub visitor_id: Option<String>,
    pub status: ConversationStatus,
    pub started_at_ms: i64,
    pub updated_at_ms: i64,
    pub messages: u32,
    /// Articles the assistant offered, in first-offered order.
    pub article_ids: Vec<String>,
    /// The staff member the conversation is assigned to after a handoff.
    #[serde(default)]
    pub assigned_to: Option<String>,
    /// Lead fields the visitor gave in the chat (email, company, team size, ...).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// SHA-256 (hex) of the secret the widget holds to read and write the conversation.
    #[serde(default)]
    pub token_hash: String,
    /// The lead field the assistant just asked for (the next message answers it).
    #[serde(default)]
    pub pending_field: Option<String>,
    /// The tracker's session when the conversation started.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Qualification fields the visitor passed over (not asked again in this conversation).
    #[serde(default)]
    pub declined: Vec<String>,
}

/// One qualification question: the lead field its answer fills and how the assistant asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatQuestion {
    /// `email` (checked as an email; identifies the visitor) or another trait key such as
    /// `company`, `team_size`, `use_case`, `timeline`.
    pub field: String,
    pub prompt: String,
}

/// A site's chat: on or off, what it says first, which lead fields it asks for after its first
/// answer, and when it hands the visitor to a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatSettings {
    pub enabled: bool,
    pub title: String,
    pub greeting: String,
    /// Asked one at a time, in order, skipping fields already known.
    pub questions: Vec<ChatQuestion>,
    /// Phrases (whole words, any case) that ask for a person.
    pub handoff_keywords: Vec<String>,
    /// A question about price, cost, seats or quotes goes to a person after its answer.
    pub handoff_on_pricing: bool,
}

impl Default for ChatSettings {
    fn default() -> ChatSettings {
        ChatSettings {
            enabled: true,
            title: "Questions? Chat with us".into(),
            greeting: "Hi! Ask me anything about the product; I answer from our help centre, and a person can take over any time.".into(),
            questions: vec![
                ChatQuestion { field: "email".into(), prompt: "What's your work email, so we can follow up?".into() },
                ChatQuestion { field: "company".into(), prompt: "Which company are you with?".into() },
            ],
            handoff_keywords: ["talk to a person", "talk to someone", "human", "real person", "agent", "sales", "representative", "speak to someone"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            handoff_on_pricing: true,
        }
    }
}

impl ChatSettings {
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (field, text, max) in [("chat.title", &self.title, 100), ("chat.greeting", &self.greeting, 1000)] {
            if text.trim().is_empty() || text.chars().count() > max {
                errors.push(FieldError::new(field, "invalid_value", format!("{field} must be 1–{max} characters")));
            }
        }
        if self.questions.len() > 10 {
            errors.push(FieldError::new("chat.questions", "invalid_value", "at most 10 questions"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, q) in self.questions.iter().enumerate() {
            if !valid_key(&q.field) || !seen.insert(q.field.as_str()) {
                errors.push(FieldError::new(&format!("chat.questions[{i}].field"), "invalid_id", "fields are distinct keys of 1–64 of [A-Za-z0-9_.-]"));
            }
            if q.prompt.trim().is_empty() || q.prompt.chars().count() > 300 {
                errors.push(FieldError::new(&format!("chat.questions[{i}].prompt"), "invalid_value", "prompts are 1–300 characters"));
            }
        }
        if self.handoff_keywords.len() > 50 || self.handoff_keywords.iter().any(|k| k.trim().is_empty() || k.chars().count() > 60) {
            errors.push(FieldError::new("chat.handoff_keywords", "invalid_value", "at most 50 phrases of 1–60 characters"));
        }
        errors
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageAuthor {
    Visitor,
    Assistant,
    Agent,
}

/// One message of a conversation. Stored once per id: a retried send is not a second message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConversationMessage {
    pub site_id: String,
    pub conversation_id: String,
    /// A UUID.
    pub message_id: String,
    pub at_ms: i64,
    pub author: MessageAuthor,
    /// The staff member's username for agent messages.
    pub agent: Option<String>,
    /// Plain text, as typed (escaped wherever it is shown).
    pub text: String,
    /// Articles an assistant answer cites.
    pub article_ids: Vec<String>,
}

/// Additive daily KB counters of one key: a site's day (`article_id` and `query` empty), an
/// article's day (`article_id` set) or a content gap (`query` set: a normalised search that
/// found no good result). Stores sum the deltas written under the same key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbCounter {
    pub site_id: String,
    /// [`crate::utc_day`] of the events.
    pub day: i64,
    pub article_id: String,
    pub query: String,
    pub views: u64,
    pub helpful_yes: u64,
    pub helpful_no: u64,
    pub searches: u64,
    pub no_result_searches: u64,
    pub deflections: u64,
    pub handoffs: u64,
}

impl KbCounter {
    /// A zero counter for a key.
    pub fn key(site_id: &str, day: i64, article_id: &str, query: &str) -> KbCounter {
        KbCounter { site_id: site_id.to_owned(), day, article_id: article_id.to_owned(), query: query.to_owned(), ..KbCounter::default() }
    }

    /// The seven counts, in field order.
    pub fn counts(&self) -> [u64; 7] {
        [self.views, self.helpful_yes, self.helpful_no, self.searches, self.no_result_searches, self.deflections, self.handoffs]
    }

    pub fn set_counts(&mut self, c: [u64; 7]) {
        [self.views, self.helpful_yes, self.helpful_no, self.searches, self.no_result_searches, self.deflections, self.handoffs] = c;
    }

    /// Adds another counter's counts (saturating).
    pub fn add(&mut self, other: &KbCounter) {
        let mut c = self.counts();
        for (a, b) in c.iter_mut().zip(other.counts()) {
            *a = a.saturating_add(b);
        }
        self.set_counts(c);
    }

    pub fn is_zero(&self) -> bool {
        self.counts().iter().all(|&c| c == 0)
    }
}

/// A search query as a content-gap key: lowercased, whitespace collapsed, cut to
/// [`MAX_GAP_QUERY_CHARS`] characters.
pub fn normalize_query(q: &str) -> String {
    let lower = q.to_lowercase();
    let mut out = String::new();
    for word in lower.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.chars().take(MAX_GAP_QUERY_CHARS).collect::<String>().trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article() -> Article {
        Article {
            site_id: "acme".into(),
            article_id: "art_0123456789ab".into(),
            slug: "reset-your-password".into(),
            title: "Reset your password".into(),
            body_md: "# Reset\nGo to settings.".into(),
            body_html: String::new(),
            category: Some("account".into()),
            tags: vec!["login".into()],
            status: ArticleStatus::Published,
            version: 1,
            created_at_ms: 1,
            created_by: "ana".into(),
            updated_at_ms: 1,
            updated_by: "ana".into(),
            published_at_ms: Some(1),
            deleted_at_ms: None,
        }
    }

    #[test]
    fn slugs() {
        assert_eq!(slugify("Reset your password!"), "reset-your-password");
        assert_eq!(slugify("  SSO & SAML: 2.0 setup  "), "sso-saml-2-0-setup");
        assert_eq!(slugify("日本語"), "");
        let long = slugify(&"word ".repeat(40));
        assert!(long.len() <= 80 && valid_slug(&long), "{long}");
        for good in ["a", "sso", "a-b-1"] {
            assert!(valid_slug(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a--b", "A", "a b", "a/b", "é", &"a".repeat(101)] {
            assert!(!valid_slug(bad), "{bad}");
        }
    }

    #[test]
    fn check_names_every_bad_field() {
        assert!(article().check().is_empty());
        let mut bad = article();
        bad.slug = "Bad Slug".into();
        bad.title = " ".into();
        bad.body_md = "x".repeat(MAX_ARTICLE_BODY_BYTES + 1);
        bad.category = Some("../etc".into());
        bad.tags = (0..21).map(|i| format!("t{i}")).collect();
        bad.tags[0] = "<script>".into();
        let fields: Vec<_> = bad.check().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["slug", "title", "body_md", "category", "tags", "tags[0]"]);
    }

    #[test]
    fn live_means_published_and_not_deleted() {
        let mut a = article();
        assert!(a.is_live());
        a.deleted_at_ms = Some(2);
        assert!(!a.is_live());
        a.deleted_at_ms = None;
        a.status = ArticleStatus::Draft;
        assert!(!a.is_live());
        let v = a.version_row("bo", 9);
        assert_eq!((v.version, v.author.as_str(), v.at_ms, v.deleted), (1, "bo", 9, false));
    }

    #[test]
    fn enums_are_snake_case_and_round_trip() {
        assert_eq!(serde_json::to_string(&ConversationStatus::HandedOff).unwrap(), "\"handed_off\"");
        assert_eq!(serde_json::to_string(&ArticleStatus::Published).unwrap(), "\"published\"");
        let a = article();
        let back: Article = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
        let old = r#"{"site_id":"s","conversation_id":"c","visitor_id":null,"status":"open","started_at_ms":1,"updated_at_ms":1,"messages":0,"article_ids":[]}"#;
        let c: Conversation = serde_json::from_str(old).unwrap();
        assert!(c.fields.is_empty() && c.assigned_to.is_none() && c.token_hash.is_empty() && c.pending_field.is_none());
        let settings: ChatSettings = serde_json::from_str(r#"{"greeting":"Hello"}"#).unwrap();
        assert_eq!((settings.greeting.as_str(), settings.questions.len(), settings.enabled), ("Hello", 2, true));
        assert!(ChatSettings::default().check().is_empty());
        let bad = ChatSettings { title: String::new(), questions: vec![ChatQuestion { field: "a b".into(), prompt: String::new() }], ..ChatSettings::default() };
        let fields: Vec<_> = bad.check().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["chat.title", "chat.questions[0].field", "chat.questions[0].prompt"]);
        assert!(serde_json::from_str::<ChatSettings>(r#"{"greting":"typo"}"#).is_err());
    }

    #[test]
    fn counters_add_and_queries_normalise() {
        let mut a = KbCounter { views: 2, handoffs: u64::MAX, ..KbCounter::key("s", 1, "a", "") };
        a.add(&KbCounter { views: 3, handoffs: 1, ..KbCounter::default() });
        assert_eq!((a.views, a.handoffs), (5, u64::MAX));
        assert!(!a.is_zero() && KbCounter::default().is_zero());
        assert_eq!(normalize_query("  How DO I\tReset   SSO? "), "how do i reset sso?");
        assert_eq!(normalize_query(&"ab ".repeat(80)).chars().count(), MAX_GAP_QUERY_CHARS);
        assert_eq!(normalize_query(&"abcd ".repeat(40)).chars().count(), 99, "no trailing space");
    }
}
