//! What the chat needs besides the store: which staff are online (they are while they look at
//! the inbox), per-conversation flood limits and write locks, where pipeline events go, and the
//! handoff alerts.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_schemas::{
    alert_id_for, lead_id_for, AlertCondition, Alert, CollectedEvent, Conversation, DeliveryStatus, EventKind, MessageAuthor, Scalar, Site, WireEvent,
};
use parking_lot::Mutex;

use crate::session::ClientInfo;
use crate::{ApiError, ApiState};

/// Where chat events go: the event log the collector writes (wired by the binary). Returns an
/// error text when the log refuses them.
pub type EventSink = Arc<dyn Fn(Vec<CollectedEvent>) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Most messages one conversation may send per minute.
pub const FLOOD_MESSAGES_PER_MINUTE: usize = 10;
/// Most messages a transcript read returns.
pub const MAX_TRANSCRIPT: usize = 1_000;
/// How long a staff member counts as online after their last inbox request.
pub const PRESENCE: Duration = Duration::from_secs(60);

/// What happened in a conversation, as an event of its visitor.
pub enum ChatEvent {
    Started { url: Option<String> },
    Message { author: MessageAuthor, text: String },
    Handoff { agents_online: bool },
    Resolved,
    /// The visitor gave lead fields (an email identifies them).
    Identify,
}

#[derive(Default)]
pub struct ChatRuntime {
    sink: Option<EventSink>,
    writer: Option<super::writer::AnswerWriter>,
    presence: Mutex<HashMap<String, Instant>>,
    flood: Mutex<HashMap<String, VecDeque<Instant>>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ChatRuntime {
    pub fn new(sink: Option<EventSink>, writer: Option<super::writer::AnswerWriter>) -> ChatRuntime {
        ChatRuntime { sink, writer, ..ChatRuntime::default() }
    }

    /// The model that writes answers, when one is configured.
    pub fn writer(&self) -> Option<&super::writer::AnswerWriter> {
        self.writer.as_ref()
    }

    /// Whether chat events reach the event log (they do in `crm up`, and in `crm api` with Kafka).
    pub fn has_sink(&self) -> bool {
        self.sink.is_some()
    }

    /// Marks a staff member as online (they are reading the inbox or a conversation).
    pub fn seen(&self, username: &str) {
        self.presence.lock().insert(username.to_owned(), Instant::now());
    }

    pub fn agents_online(&self) -> bool {
        let mut presence = self.presence.lock();
        presence.retain(|_, at| at.elapsed() < PRESENCE);
        !presence.is_empty()
    }

    /// 429 when the conversation sent [`FLOOD_MESSAGES_PER_MINUTE`] messages in the last minute.
    pub fn check_flood(&self, conversation_id: &str) -> Result<(), ApiError> {
        let mut flood = self.flood.lock();
        if flood.len() > 50_000 {
            flood.retain(|_, times| times.back().is_some_and(|t| t.elapsed() < Duration::from_secs(60)));
        }
        let times = flood.entry(conversation_id.to_owned()).or_default();
        while times.front().is_some_and(|t| t.elapsed() >= Duration::from_secs(60)) {
            times.pop_front();
        }
        if times.len() >= FLOOD_MESSAGES_PER_MINUTE {
            let wait = 60u64.saturating_sub(times.front().map_or(0, |t| t.elapsed().as_secs())).max(1);
            return Err(ApiError::RateLimited { code: "rate_limited", message: format!("too many messages; retry in {wait} s"), retry_after_secs: wait });
        }
        times.push_back(Instant::now());
        Ok(())
    }

    /// Serialises writes to one conversation in this process.
    pub async fn lock(&self, conversation_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock();
            if locks.len() > 10_000 {
                locks.retain(|_, l| Arc::strong_count(l) > 1);
            }
            locks.entry(conversation_id.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Sends `what` to the event log as an event of the conversation's visitor, carrying the
    /// visitor's address and user agent from `client` (their request), so enrichment sees what
    /// it sees for a beacon. A conversation without a visitor id (no tracker on the page) has no
    /// pipeline events. Failures are logged, not returned: the chat itself is stored already.
    pub async fn emit(&self, client: &ClientInfo, c: &Conversation, what: ChatEvent) {
        let (Some(sink), Some(visitor_id)) = (&self.sink, &c.visitor_id) else { return };
        let mut props = std::collections::BTreeMap::from([("conversation_id".to_owned(), Scalar::Str(c.conversation_id.clone()))]);
        let (kind, name, traits, url) = match what {
            ChatEvent::Started { url } => (EventKind::Custom, Some("chat_started"), None, url),
            ChatEvent::Message { author, text } => {
                props.insert("author".into(), Scalar::Str(format!("{author:?}").to_lowercase()));
                // The timeline shows what was said; the whole transcript is the conversation's.
                let mut cut: String = text.chars().take(250).collect();
                if cut.len() < text.len() {
                    cut.push('…');
                }
                props.insert("text".into(), Scalar::Str(cut));
                (EventKind::Custom, Some("chat_message"), None, None)
            }
            ChatEvent::Handoff { agents_online } => {
                props.insert("agents_online".into(), Scalar::Bool(agents_online));
                (EventKind::Custom, Some("chat_handoff"), None, None)
            }
            ChatEvent::Resolved => (EventKind::Custom, Some("chat_resolved"), None, None),
            ChatEvent::Identify => (EventKind::Identify, None, Some(super::traits(c)), None),
        };
        let now = crate::auth::now_ms();
        let wire = WireEvent {
            v: crm_schemas::SCHEMA_VERSION,
            kind: Some(kind),
            site_id: c.site_id.clone(),
            event_id: Some(uuid::Uuid::new_v4().to_string()),
            visitor_id: Some(visitor_id.clone()),
            session_id: c.session_id.clone(),
            ts: Some(now),
            url: url.filter(|u| u.starts_with("http://") || u.starts_with("https://")),
            props: if kind == EventKind::Custom { Some(props) } else { None },
            traits,
            name: name.map(str::to_owned),
            ..WireEvent::default()
        };
        let event = match wire.validate(&crm_schemas::Limits::default()) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(conversation_id = %c.conversation_id, error = %e.message, "chat event refused by the event contract");
                return;
            }
        };
        let collected = CollectedEvent {
            event: WireEvent::from(&event),
            received_at_ms: now,
            ip: client.ip.map(|ip| ip.to_string()),
            user_agent: client.user_agent.clone(),
        };
        if let Err(e) = sink(vec![collected]).await {
            tracing::warn!(conversation_id = %c.conversation_id, error = %e, "chat event not written to the event log");
        }
    }

    /// Fires the site's enabled `chat_handoff` rules (once per conversation and rule window).
    /// `question` is the message that asked (when it is not stored yet); else the last stored
    /// visitor message is quoted.
    pub async fn fire_handoff_alerts(&self, state: &ApiState, site: &Site, c: &Conversation, question: Option<&str>, agents_online: bool, at_ms: i64) -> Result<(), ApiError> {
        let rules = state.store.alert_rules(&site.site_id).await?;
        let mut fired: Option<std::collections::HashSet<String>> = None;
        for rule in rules.iter().filter(|r| r.enabled) {
            let AlertCondition::ChatHandoff { only_when_offline } = &rule.condition else { continue };
            if *only_when_offline && agents_online {
                continue;
            }
            let alert_id = alert_id_for(&site.site_id, &rule.rule_id, &c.conversation_id, rule.window_hours, at_ms);
            // Once per conversation and window: a second handoff must not reset a delivered alert.
            if fired.is_none() {
                fired = Some(state.store.alerts(&site.site_id, 1_000).await?.into_iter().map(|a| a.alert_id).collect());
            }
            if fired.as_ref().is_some_and(|ids| ids.contains(&alert_id)) {
                continue;
            }
            let email = c.fields.get("email").cloned().unwrap_or_default();
            let lead_id = if email.is_empty() { String::new() } else { lead_id_for(&site.site_id, &email) };
            let question = match question {
                Some(q) => q.chars().take(200).collect::<String>(),
                None => state
                    .store
                    .messages(&site.site_id, &c.conversation_id, MAX_TRANSCRIPT)
                    .await?
                    .into_iter()
                    .rev()
                    .find(|m| m.author == MessageAuthor::Visitor)
                    .map(|m| m.text.chars().take(200).collect::<String>())
                    .unwrap_or_default(),
            };
            let who = if email.is_empty() { "an anonymous visitor".to_owned() } else { email.clone() };
            let alert = Alert {
                site_id: site.site_id.clone(),
                alert_id,
                rule_id: rule.rule_id.clone(),
                rule_name: rule.name.clone(),
                lead_id,
                lead_email: email,
                lead_score: 0,
                message: format!(
                    "chat handoff from {who}{}: \"{question}\" (conversation {})",
                    if agents_online { "" } else { " while no one is online" },
                    c.conversation_id
                ),
                fired_at_ms: at_ms,
                status: DeliveryStatus::Pending,
                next_attempt_ms: at_ms,
                attempts: Vec::new(),
                task: None,
            };
            state.store.update_alert(&alert).await?;
            tracing::info!(site_id = %site.site_id, rule_id = %rule.rule_id, conversation_id = %c.conversation_id, "chat handoff alert fired");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floods_are_refused_per_conversation() {
        let chat = ChatRuntime::new(None, None);
        for _ in 0..FLOOD_MESSAGES_PER_MINUTE {
            chat.check_flood("a").unwrap();
        }
        let Err(ApiError::RateLimited { retry_after_secs, .. }) = chat.check_flood("a") else { panic!("limited") };
        assert!((1..=60).contains(&retry_after_secs));
        assert!(chat.check_flood("b").is_ok());
    }

    #[test]
    fn presence_is_who_looked_lately() {
        let chat = ChatRuntime::new(None, None);
        assert!(!chat.agents_online());
        chat.seen("ana");
        assert!(chat.agents_online());
    }
}
