//! The chat widget's public API (`/v1/chat/{site}/…`, no sign-in; CORS and rate limit as the
//! knowledge base's public API): start a conversation, poll it, send a message, ask for a person,
//! rate an answer. A conversation is reached with its id and the secret token issued at its
//! start (only the token's SHA-256 is stored).
//!
//! What a visitor's message gets back, in order: the answer to a pending qualification question
//! (an email identifies the visitor through the event log, exactly as a form does); a handoff
//! when they ask for a person or ask about pricing (a rule per site); otherwise the knowledge
//! base's best passages with links ([`answer`]; written by a model from those articles only when
//! `--ai-base-url` is set, [`writer`]), then the next qualification question. Visitor
//! and agent messages, the start, handoffs and resolutions also go to the event log as events of
//! the visitor (with the visitor's own address and user agent, so enrichment treats them like the
//! tracker's beacons), so intent, lead scores, timelines and alerts see the conversation. Staff
//! replies stay in the conversation: they are not the visitor's actions.

pub mod answer;
pub mod runtime;
pub mod staff;
pub mod writer;

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crm_schemas::{
    is_email, normalize_email, valid_key, Conversation, ConversationMessage, ConversationStatus, MessageAuthor, Scalar, Site, MAX_MESSAGE_CHARS,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::now_ms;
use crate::session::ClientInfo;
use crate::kb::public::{count_search, public_site, public_url};
use crate::{params, ApiError, ApiState};
pub use runtime::{ChatEvent, ChatRuntime, EventSink};

/// A message as the widget and the staff API show it.
#[derive(Serialize)]
pub struct MessageView {
    pub message_id: String,
    pub at_ms: i64,
    pub author: MessageAuthor,
    pub agent: Option<String>,
    pub text: String,
    pub articles: Vec<ArticleLink>,
    /// The assistant asked for this lead field (`email` or `text`).
    pub expects: Option<&'static str>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ArticleLink {
    pub title: String,
    pub url: String,
}

pub(crate) fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn view(state: &ApiState, m: &ConversationMessage, pending: Option<&str>) -> MessageView {
    let articles = m
        .article_ids
        .iter()
        .filter_map(|id| state.kb.entry_by_id(&m.site_id, id))
        .map(|e| ArticleLink { title: e.title.clone(), url: public_url(state, &crate::kb::runtime::article_path(&m.site_id, &e.slug)) })
        .collect();
    let expects = pending.map(|field| if field == "email" { "email" } else { "text" });
    MessageView { message_id: m.message_id.clone(), at_ms: m.at_ms, author: m.author, agent: m.agent.clone(), text: m.text.clone(), articles, expects }
}

fn envelope(status: StatusCode, data: serde_json::Value) -> Response {
    (status, axum::Json(serde_json::json!({ "success": true, "data": data }))).into_response()
}

fn chat_disabled(site: &Site) -> ApiError {
    ApiError::NotFound(format!("chat on site {}", site.site_id))
}

/// The time of a conversation's next message: now, but always after its last one, so a poll
/// with `after` = the last time seen never skips a message written in the same millisecond.
pub(crate) fn next_at(c: &Conversation) -> i64 {
    now_ms().max(c.updated_at_ms + 1)
}

/// A new message of `author` at `at_ms` (ids are fresh unless given).
pub(crate) fn message(c: &Conversation, author: MessageAuthor, text: String, at_ms: i64) -> ConversationMessage {
    ConversationMessage {
        site_id: c.site_id.clone(),
        conversation_id: c.conversation_id.clone(),
        message_id: Uuid::new_v4().to_string(),
        at_ms,
        author,
        agent: None,
        text,
        article_ids: Vec::new(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartInput {
    #[serde(default)]
    visitor_id: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

fn check_id(name: &str, value: &Option<String>) -> Result<(), ApiError> {
    match value {
        Some(v) if !valid_key(v) => Err(ApiError::Validation(vec![(name.into(), "must be 1–64 of [A-Za-z0-9_.-]".into())])),
        _ => Ok(()),
    }
}

pub async fn start(State(state): State<ApiState>, client: ClientInfo, Path(site_id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let site = public_site(&state, &site_id).await?;
    if !site.chat.enabled {
        return Err(chat_disabled(&site));
    }
    let input: StartInput = params::json(if body.is_empty() { b"{}" } else { &body })?;
    check_id("visitor_id", &input.visitor_id)?;
    check_id("session_id", &input.session_id)?;
    if input.url.as_ref().is_some_and(|u| u.len() > 2048) {
        return Err(ApiError::Validation(vec![("url".into(), "must be at most 2048 bytes".into())]));
    }
    let now = now_ms();
    let token = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let conversation = Conversation {
        site_id: site.site_id.clone(),
        conversation_id: Uuid::new_v4().to_string(),
        visitor_id: input.visitor_id.clone(),
        status: ConversationStatus::Open,
        started_at_ms: now,
        updated_at_ms: now,
        messages: 1,
        article_ids: Vec::new(),
        assigned_to: None,
        fields: BTreeMap::new(),
        token_hash: token_hash(&token),
        pending_field: None,
        session_id: input.session_id.clone(),
        declined: Vec::new(),
    };
    let greeting = message(&conversation, MessageAuthor::Assistant, site.chat.greeting.clone(), now);
    state.store.put_conversation(&conversation).await?;
    state.store.add_messages(std::slice::from_ref(&greeting)).await?;
    state.chat.emit(&client, &conversation, ChatEvent::Started { url: input.url }).await;
    tracing::info!(site_id = %site.site_id, conversation_id = %conversation.conversation_id, "chat started");
    Ok(envelope(
        StatusCode::CREATED,
        serde_json::json!({
            "conversation_id": conversation.conversation_id,
            "token": token,
            "status": conversation.status,
            "agents_online": state.chat.agents_online(),
            "title": site.chat.title,
            "messages": [view(&state, &greeting, None)],
        }),
    ))
}

/// The conversation if `token` opens it; 404 for an unknown id and for a wrong token alike.
async fn authorised(state: &ApiState, site_id: &str, conversation_id: &str, token: &str) -> Result<Conversation, ApiError> {
    let not_found = || ApiError::NotFound(format!("conversation {conversation_id}"));
    if Uuid::parse_str(conversation_id).is_err() || token.is_empty() || token.len() > 128 {
        return Err(not_found());
    }
    let conversation = state.store.conversation(site_id, conversation_id).await?.ok_or_else(not_found)?;
    let given = token_hash(token);
    // Constant time: the comparison does not reveal how much of a guess was right.
    let same = given.len() == conversation.token_hash.len() && given.bytes().zip(conversation.token_hash.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if same {
        Ok(conversation)
    } else {
        Err(not_found())
    }
}

fn status_data(state: &ApiState, c: &Conversation, messages: Vec<MessageView>) -> serde_json::Value {
    serde_json::json!({
        "conversation_id": c.conversation_id,
        "status": c.status,
        "assigned_to": c.assigned_to,
        "agents_online": state.chat.agents_online(),
        "messages": messages,
    })
}

pub async fn poll(State(state): State<ApiState>, Path((site_id, conversation_id)): Path<(String, String)>, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    public_site(&state, &site_id).await?;
    let token = params::required(&query, "token")?;
    let after: i64 = match query.get("after") {
        None => i64::MIN,
        Some(a) => a.parse().map_err(|_| ApiError::InvalidParameter { name: "after".into(), message: "must be epoch milliseconds".into() })?,
    };
    let conversation = authorised(&state, &site_id, &conversation_id, token).await?;
    let messages = state.store.messages(&site_id, &conversation_id, runtime::MAX_TRANSCRIPT).await?;
    let last_assistant = messages.iter().rev().find(|m| m.author != MessageAuthor::Visitor).map(|m| m.message_id.clone());
    let views = messages
        .iter()
        .filter(|m| m.at_ms > after)
        .map(|m| view(&state, m, conversation.pending_field.as_deref().filter(|_| Some(&m.message_id) == last_assistant.as_ref())))
        .collect();
    Ok(envelope(StatusCode::OK, status_data(&state, &conversation, views)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendInput {
    token: String,
    text: String,
    /// The widget's id of this send: a retry with the same id is not a second message.
    #[serde(default)]
    client_id: Option<String>,
}

pub async fn send(State(state): State<ApiState>, client: ClientInfo, Path((site_id, conversation_id)): Path<(String, String)>, body: Bytes) -> Result<Response, ApiError> {
    let site = public_site(&state, &site_id).await?;
    let input: SendInput = params::json(&body)?;
    let text = input.text.trim();
    if text.is_empty() {
        return Err(ApiError::Unprocessable { code: "empty_message", message: "the message is empty".into(), details: None });
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::PayloadTooLarge { code: "message_too_long", message: format!("a message is at most {MAX_MESSAGE_CHARS} characters") });
    }
    check_id("client_id", &input.client_id)?;
    let _guard = state.chat.lock(&conversation_id).await;
    let mut conversation = authorised(&state, &site_id, &conversation_id, &input.token).await?;
    if conversation.status == ConversationStatus::Closed {
        return Err(ApiError::Conflict { code: "conversation_closed", message: "this conversation was closed; start a new one".into(), details: None });
    }
    if conversation.messages as usize + 4 > runtime::MAX_TRANSCRIPT {
        return Err(ApiError::Conflict { code: "conversation_full", message: format!("a conversation holds at most {} messages; start a new one", runtime::MAX_TRANSCRIPT), details: None });
    }
    let now = next_at(&conversation);
    let mut visitor = message(&conversation, MessageAuthor::Visitor, text.to_owned(), now);
    if let Some(client_id) = &input.client_id {
        visitor.message_id = Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("{conversation_id}\n{client_id}").as_bytes()).to_string();
        let stored = state.store.messages(&site_id, &conversation_id, runtime::MAX_TRANSCRIPT).await?;
        if let Some(at) = stored.iter().position(|m| m.message_id == visitor.message_id) {
            // A retry: answer with what the first attempt produced.
            let views = stored[at..].iter().map(|m| view(&state, m, None)).collect::<Vec<_>>();
            return Ok(envelope(StatusCode::CREATED, serde_json::json!({ "status": conversation.status, "messages": views })));
        }
    }
    state.chat.check_flood(&conversation_id)?;
    let mut out = vec![visitor.clone()];
    let replies = respond(&state, &client, &site, &mut conversation, &visitor).await?;
    out.extend(replies);
    conversation.messages += out.len() as u32;
    conversation.updated_at_ms = out.iter().map(|m| m.at_ms).max().unwrap_or(now);
    if conversation.status == ConversationStatus::Resolved {
        conversation.status = ConversationStatus::Open; // a new question reopens it
    }
    state.store.add_messages(&out).await?;
    state.store.put_conversation(&conversation).await?;
    state.chat.emit(&client, &conversation, ChatEvent::Message { author: MessageAuthor::Visitor, text: visitor.text.clone() }).await;
    let last = out.len() - 1;
    let views: Vec<MessageView> =
        out.iter().enumerate().map(|(i, m)| view(&state, m, conversation.pending_field.as_deref().filter(|_| i == last && m.author != MessageAuthor::Visitor))).collect();
    Ok(envelope(StatusCode::CREATED, serde_json::json!({ "status": conversation.status, "messages": views })))
}

/// What a message says to a pending question: the answer, a malformed email, or nothing (the
/// visitor asked something else instead).
enum Reply {
    Answer(String),
    BadEmail,
    Other,
}

fn as_answer(field: &str, text: &str, handoff_phrases: &[String]) -> Reply {
    let text = text.trim();
    if answer::asks_for_person(text, handoff_phrases) {
        return Reply::Other;
    }
    if field == "email" {
        // An answer to "what's your email" has an @; anything else is a question of its own.
        let Some(word) = text.split_whitespace().find(|w| w.contains('@')) else { return Reply::Other };
        let word = word.trim_matches(|c: char| !(c.is_alphanumeric() || c == '@' || c == '.' || c == '_' || c == '-' || c == '+'));
        return match normalize_email(word).filter(|e| is_email(e)) {
            Some(email) => Reply::Answer(email),
            None => Reply::BadEmail,
        };
    }
    // A phrase, not a question: "Acme Corp", "about 50", "next quarter", "tracking our site".
    if answer::is_question(text) || text.split_whitespace().count() > 12 || text.chars().count() > 200 {
        Reply::Other
    } else {
        Reply::Answer(text.to_owned())
    }
}

/// The replies to a visitor's message; updates the conversation (fields, status, articles).
async fn respond(state: &ApiState, client: &ClientInfo, site: &Site, c: &mut Conversation, visitor: &ConversationMessage) -> Result<Vec<ConversationMessage>, ApiError> {
    let at = visitor.at_ms + 1;
    let mut replies = Vec::new();
    if let Some(field) = c.pending_field.clone() {
        match as_answer(&field, &visitor.text, &site.chat.handoff_keywords) {
            Reply::Answer(value) => {
                c.fields.insert(field.clone(), value);
                c.pending_field = None;
                state.chat.emit(client, c, ChatEvent::Identify).await;
                if c.status != ConversationStatus::HandedOff {
                    replies.push(next_question(site, c, at, "Thanks!"));
                }
                return Ok(replies);
            }
            Reply::BadEmail => {
                replies.push(message(c, MessageAuthor::Assistant, "That doesn't look like an email address. Could you check it?".into(), at));
                return Ok(replies);
            }
            // Waiting for a person who is offline: the email they were asked for may come in
            // any later message, so the question stays open.
            Reply::Other if c.status == ConversationStatus::HandedOff => {}
            // Otherwise not an answer: the question is dropped for this conversation and the
            // message is treated as what it is.
            Reply::Other => {
                c.pending_field = None;
                c.declined.push(field);
            }
        }
    }
    if c.status == ConversationStatus::HandedOff {
        return Ok(replies); // a person answers now
    }
    if answer::asks_for_person(&visitor.text, &site.chat.handoff_keywords) {
        replies.extend(handoff(state, client, site, c, Some(&visitor.text), at).await?);
        return Ok(replies);
    }
    let hits = match state.kb.search(&site.site_id, &visitor.text, 3).await {
        Ok(hits) => hits,
        Err(ApiError::InvalidParameter { .. }) => Vec::new(), // over the query limit: no search
        Err(other) => return Err(other),
    };
    // Chat small talk ("thanks!", "ok") is not a search; questions are (gaps included).
    if answer::looks_like_question(&visitor.text) {
        count_search(state, &site.site_id, &visitor.text, &hits);
    }
    let mut reply = answer::compose(&hits);
    if let (Some(writer), false) = (state.chat.writer(), reply.article_ids.is_empty()) {
        let mut sources = Vec::new();
        for id in &reply.article_ids {
            if let Some(article) = state.store.article(&site.site_id, id).await?.filter(|a| a.is_live()) {
                sources.push(writer::Source { title: article.title.clone(), text: crate::kb::markdown::render(&article.body_md).text });
            }
        }
        match writer.write(&visitor.text, &sources).await {
            Ok(text) => reply.text = text,
            Err(e) => tracing::warn!(conversation_id = %c.conversation_id, error = %e, "the model wrote no answer; sending the articles' passages"),
        }
    }
    let mut m = message(c, MessageAuthor::Assistant, reply.text, at);
    m.article_ids = reply.article_ids.clone();
    for id in reply.article_ids {
        if !c.article_ids.contains(&id) {
            c.article_ids.push(id);
        }
    }
    replies.push(m);
    if site.chat.handoff_on_pricing && answer::is_pricing_question(&visitor.text) {
        replies.extend(handoff(state, client, site, c, Some(&visitor.text), at + 1).await?);
        return Ok(replies);
    }
    if c.pending_field.is_none() {
        if let Some(q) = site.chat.questions.iter().find(|q| !c.fields.contains_key(&q.field) && !c.declined.contains(&q.field)) {
            c.pending_field = Some(q.field.clone());
            replies.push(message(c, MessageAuthor::Assistant, q.prompt.clone(), at + 1));
        }
    }
    Ok(replies)
}

/// The next unanswered qualification question, or a thank-you.
fn next_question(site: &Site, c: &mut Conversation, at: i64, prefix: &str) -> ConversationMessage {
    match site.chat.questions.iter().find(|q| !c.fields.contains_key(&q.field) && !c.declined.contains(&q.field)) {
        Some(q) => {
            c.pending_field = Some(q.field.clone());
            message(c, MessageAuthor::Assistant, format!("{prefix} {}", q.prompt), at)
        }
        None => message(c, MessageAuthor::Assistant, format!("{prefix} Anything else I can help with?"), at),
    }
}

/// Hands the conversation to a person: status, counters, event, alerts, and what to tell the visitor.
pub(crate) async fn handoff(state: &ApiState, client: &ClientInfo, site: &Site, c: &mut Conversation, question: Option<&str>, at: i64) -> Result<Vec<ConversationMessage>, ApiError> {
    if c.status == ConversationStatus::HandedOff {
        return Ok(Vec::new());
    }
    c.status = ConversationStatus::HandedOff;
    let online = state.chat.agents_online();
    state.kb.count(&site.site_id, at, "", "", |k| k.handoffs += 1);
    state.chat.emit(client, c, ChatEvent::Handoff { agents_online: online }).await;
    state.chat.fire_handoff_alerts(state, site, c, question, online, at).await?;
    let text = if online {
        c.pending_field = None;
        format!("I'm bringing in someone from the {} team; they will reply here shortly.", site.name)
    } else if c.fields.contains_key("email") {
        "No one is online right now. We have your email and will get back to you soon; you can leave more details here.".to_owned()
    } else {
        c.pending_field = Some("email".into());
        "No one is online right now. Leave your email and we'll get back to you.".to_owned()
    };
    Ok(vec![message(c, MessageAuthor::Assistant, text, at)])
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenInput {
    token: String,
}

pub async fn request_handoff(State(state): State<ApiState>, client: ClientInfo, Path((site_id, conversation_id)): Path<(String, String)>, body: Bytes) -> Result<Response, ApiError> {
    let site = public_site(&state, &site_id).await?;
    let input: TokenInput = params::json(&body)?;
    let _guard = state.chat.lock(&conversation_id).await;
    let mut conversation = authorised(&state, &site_id, &conversation_id, &input.token).await?;
    if conversation.status == ConversationStatus::Closed {
        return Err(ApiError::Conflict { code: "conversation_closed", message: "this conversation was closed; start a new one".into(), details: None });
    }
    let at = next_at(&conversation);
    let replies = handoff(&state, &client, &site, &mut conversation, None, at).await?;
    conversation.messages += replies.len() as u32;
    conversation.updated_at_ms = replies.iter().map(|m| m.at_ms).max().unwrap_or(at);
    state.store.add_messages(&replies).await?;
    state.store.put_conversation(&conversation).await?;
    let pending = conversation.pending_field.clone();
    let views: Vec<MessageView> = replies.iter().map(|m| view(&state, m, pending.as_deref())).collect();
    Ok(envelope(StatusCode::OK, status_data(&state, &conversation, views)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackInput {
    token: String,
    helpful: bool,
}

pub async fn feedback(State(state): State<ApiState>, client: ClientInfo, Path((site_id, conversation_id)): Path<(String, String)>, body: Bytes) -> Result<Response, ApiError> {
    public_site(&state, &site_id).await?;
    let input: FeedbackInput = params::json(&body)?;
    let _guard = state.chat.lock(&conversation_id).await;
    let mut conversation = authorised(&state, &site_id, &conversation_id, &input.token).await?;
    let now = next_at(&conversation);
    if input.helpful && conversation.status == ConversationStatus::Open {
        conversation.status = ConversationStatus::Resolved;
        conversation.updated_at_ms = now;
        state.store.put_conversation(&conversation).await?;
        // Answered without a person: a deflection.
        state.kb.count(&site_id, now, "", "", |k| k.deflections += 1);
        for article in &conversation.article_ids {
            state.kb.count(&site_id, now, article, "", |k| k.helpful_yes += 1);
        }
        state.chat.emit(&client, &conversation, ChatEvent::Resolved).await;
    }
    Ok(envelope(StatusCode::OK, serde_json::json!({ "status": conversation.status })))
}

/// A scalar trait map of the fields a visitor gave in the chat.
pub(crate) fn traits(c: &Conversation) -> BTreeMap<String, Scalar> {
    c.fields.iter().map(|(k, v)| (k.clone(), Scalar::Str(v.clone()))).collect()
}
