//! The staff side of the chat (`/api/v1/chat/…`): the inbox (waiting conversations first), a
//! conversation with its transcript, replying (which assigns the conversation to whoever replies
//! first) and closing. Every role may answer chats. Looking at the inbox marks the caller online,
//! which is what the widget's "someone will reply" / "leave a message" choice reads. Staff
//! actions are not sent to the event log: they are not the visitor's.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crm_schemas::{Conversation, ConversationStatus, MessageAuthor, MAX_MESSAGE_CHARS};
use serde::Deserialize;

use super::runtime::MAX_TRANSCRIPT;
use super::{message, view, MessageView};
use crate::auth::AuthUser;
use crate::rbac::Permission;
use crate::{params, reply, ApiError, ApiState};

/// `GET /api/v1/chat/conversations?site_id&status&visitor_id&limit&cursor`: newest first.
pub async fn list(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(Permission::ChatRespond)?;
    state.chat.seen(&user.username);
    let site_id = params::required(&query, "site_id")?;
    let limit = params::limit(&query, 50, 200)?;
    let status: Option<ConversationStatus> = params::optional_choice(&query, "status", "open, handed_off, resolved or closed")?;
    let visitor = query.get("visitor_id");
    state.require_site(site_id).await?;
    // Filters apply page by page over the store's newest-first pages, so a page may be short.
    let page = state.store.conversations(site_id, limit, reply::decode_cursor(query.get("cursor"))?.as_deref()).await?;
    let items: Vec<&Conversation> = page
        .items
        .iter()
        .filter(|c| status.is_none_or(|s| c.status == s))
        .filter(|c| visitor.is_none_or(|v| c.visitor_id.as_ref() == Some(v)))
        .collect();
    let summaries: Vec<serde_json::Value> = items.iter().map(|c| summary(c)).collect();
    Ok(reply::page(summaries, page.next_cursor, limit))
}

fn summary(c: &Conversation) -> serde_json::Value {
    serde_json::json!({
        "site_id": c.site_id,
        "conversation_id": c.conversation_id,
        "visitor_id": c.visitor_id,
        "status": c.status,
        "started_at_ms": c.started_at_ms,
        "updated_at_ms": c.updated_at_ms,
        "messages": c.messages,
        "assigned_to": c.assigned_to,
        "fields": c.fields,
        "article_ids": c.article_ids,
    })
}

async fn existing(state: &ApiState, site_id: &str, conversation_id: &str) -> Result<Conversation, ApiError> {
    state.store.conversation(site_id, conversation_id).await?.ok_or_else(|| ApiError::NotFound(format!("conversation {site_id}/{conversation_id}")))
}

/// `GET /api/v1/chat/conversations/{site}/{id}`: the conversation and its whole transcript.
pub async fn get_one(State(state): State<ApiState>, user: AuthUser, Path((site_id, conversation_id)): Path<(String, String)>) -> Result<Response, ApiError> {
    user.require(Permission::ChatRespond)?;
    state.chat.seen(&user.username);
    let conversation = existing(&state, &site_id, &conversation_id).await?;
    let messages: Vec<MessageView> = state.store.messages(&site_id, &conversation_id, MAX_TRANSCRIPT).await?.iter().map(|m| view(&state, m, None)).collect();
    let mut body = summary(&conversation);
    body["transcript"] = serde_json::to_value(messages).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(reply::ok(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyInput {
    text: String,
}

/// `POST …/messages`: a staff reply, shown to the visitor at their next poll.
pub async fn send(State(state): State<ApiState>, user: AuthUser, Path((site_id, conversation_id)): Path<(String, String)>, body: Bytes) -> Result<Response, ApiError> {
    user.require(Permission::ChatRespond)?;
    state.chat.seen(&user.username);
    let input: ReplyInput = params::json(&body)?;
    let text = input.text.trim();
    if text.is_empty() || text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::Validation(vec![("text".into(), format!("must be 1–{MAX_MESSAGE_CHARS} characters"))]));
    }
    let _guard = state.chat.lock(&conversation_id).await;
    let mut conversation = existing(&state, &site_id, &conversation_id).await?;
    if conversation.status == ConversationStatus::Closed {
        return Err(ApiError::Conflict { code: "conversation_closed", message: "this conversation was closed".into(), details: None });
    }
    if conversation.messages as usize + 1 > MAX_TRANSCRIPT {
        return Err(ApiError::Conflict { code: "conversation_full", message: format!("a conversation holds at most {MAX_TRANSCRIPT} messages"), details: None });
    }
    let mut reply_message = message(&conversation, MessageAuthor::Agent, text.to_owned(), super::next_at(&conversation));
    reply_message.agent = Some(user.username.clone());
    conversation.assigned_to.get_or_insert_with(|| user.username.clone());
    // A person is answering now: no qualification question is waiting for the visitor.
    conversation.pending_field = None;
    conversation.status = ConversationStatus::HandedOff;
    conversation.messages += 1;
    conversation.updated_at_ms = reply_message.at_ms;
    state.store.add_messages(std::slice::from_ref(&reply_message)).await?;
    state.store.put_conversation(&conversation).await?;
    tracing::info!(%site_id, %conversation_id, by = %user.username, "chat reply");
    Ok(reply::created(view(&state, &reply_message, None)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseInput {
    /// Whether the visitor's question was answered.
    resolved: bool,
}

/// `POST …/close`: ends the conversation (the widget then offers a new one).
pub async fn close(State(state): State<ApiState>, user: AuthUser, Path((site_id, conversation_id)): Path<(String, String)>, body: Bytes) -> Result<Response, ApiError> {
    user.require(Permission::ChatRespond)?;
    let input: CloseInput = params::json(&body)?;
    let _guard = state.chat.lock(&conversation_id).await;
    let mut conversation = existing(&state, &site_id, &conversation_id).await?;
    conversation.status = if input.resolved { ConversationStatus::Resolved } else { ConversationStatus::Closed };
    conversation.updated_at_ms = super::next_at(&conversation);
    conversation.pending_field = None;
    state.store.put_conversation(&conversation).await?;
    tracing::info!(%site_id, %conversation_id, by = %user.username, resolved = input.resolved, "chat closed");
    Ok((StatusCode::OK, axum::Json(serde_json::json!({ "success": true, "data": summary(&conversation) }))).into_response())
}
