//! Optional retrieval-augmented answers: with `--ai-base-url`, an OpenAI-compatible
//! `POST {base}/chat/completions` writes the chat's answer from the knowledge base's best
//! articles only, citing them by number. The prompt holds the articles and the visitor's question
//! with emails and long numbers masked; never the conversation's lead fields. Each attempt has the
//! configured timeout; a failed or timed-out attempt is retried once, then the deterministic
//! answer ([`super::answer::compose`]) is sent instead, so the visitor always gets a reply.

use std::time::Duration;

use serde_json::{json, Value};

/// Attempts per answer (the visitor is waiting: one retry, then the deterministic answer).
pub const ATTEMPTS: usize = 2;
/// Characters of each article given to the model.
pub const SOURCE_CHARS: usize = 2_000;
/// Longest answer kept from the model, in characters.
pub const MAX_ANSWER_CHARS: usize = 1_500;

#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// e.g. `https://api.openai.com/v1` or a local server's `/v1`.
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: String,
    pub timeout: Duration,
}

/// One article the answer may use.
pub struct Source {
    pub title: String,
    pub text: String,
}

pub struct AnswerWriter {
    client: reqwest::Client,
    config: WriterConfig,
}

/// The question with emails and numbers of 7+ digits (phones, account numbers; spaces and
/// dashes inside them included) masked.
pub fn redact(text: &str) -> String {
    let numberish = |w: &str| w.chars().any(|c| c.is_ascii_digit()) && w.chars().all(|c| c.is_ascii_digit() || "+-()./".contains(c));
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        if words[i].contains('@') && words[i].contains('.') {
            out.push("[email]".into());
            i += 1;
            continue;
        }
        let mut j = i;
        while j < words.len() && numberish(words[j]) {
            j += 1;
        }
        let digits: usize = words[i..j].iter().map(|w| w.chars().filter(char::is_ascii_digit).count()).sum();
        if j > i && digits >= 7 {
            out.push("[number]".into());
            i = j;
        } else {
            out.push(words[i].to_owned());
            i += 1;
        }
    }
    out.join(" ")
}

/// The chat-completions request body.
pub fn request_body(model: &str, question: &str, sources: &[Source]) -> Value {
    let mut articles = String::new();
    for (i, s) in sources.iter().enumerate() {
        let text: String = s.text.chars().take(SOURCE_CHARS).collect();
        articles.push_str(&format!("[{}] {}\n{}\n\n", i + 1, s.title, text));
    }
    json!({
        "model": model,
        "temperature": 0.2,
        "messages": [
            { "role": "system", "content": "You answer a website visitor's question for the company's support team. Use only the help-centre articles below; if they do not answer the question, say so briefly and offer to connect the visitor with a person. Cite the articles you used as [1], [2]. Answer in plain text, at most 120 words.\n\nArticles:\n".to_owned() + articles.trim_end() },
            { "role": "user", "content": redact(question) },
        ],
    })
}

impl AnswerWriter {
    pub fn new(config: WriterConfig) -> AnswerWriter {
        AnswerWriter { client: reqwest::Client::new(), config }
    }

    pub fn model(&self) -> &str {
        &self.config.model
    }

    /// The model's answer, or why there is none after [`ATTEMPTS`] tries.
    pub async fn write(&self, question: &str, sources: &[Source]) -> Result<String, String> {
        let body = request_body(&self.config.model, question, sources);
        let url = format!("{}/chat/completions", self.config.base_url.trim_end_matches('/'));
        let mut last_error = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut request = self.client.post(&url).timeout(self.config.timeout).json(&body);
            if let Some(key) = &self.config.api_key {
                request = request.bearer_auth(key);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    let reply: Value = response.json().await.map_err(|e| format!("unreadable reply: {e}"))?;
                    let text = reply["choices"][0]["message"]["content"].as_str().map(str::trim).unwrap_or("");
                    if text.is_empty() {
                        return Err("the reply has no answer text".into());
                    }
                    return Ok(text.chars().take(MAX_ANSWER_CHARS).collect());
                }
                Ok(response) => {
                    let status = response.status();
                    last_error = format!("status {status}");
                    // Only overload and server errors are worth a second try.
                    if !(status.is_server_error() || status.as_u16() == 429) {
                        break;
                    }
                }
                Err(e) => last_error = if e.is_timeout() { format!("timed out after {:?}", self.config.timeout) } else { e.to_string() },
            }
            tracing::warn!(attempt, error = %last_error, "chat answer from the model failed");
        }
        Err(last_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_is_masked_and_only_the_articles_are_given() {
        assert_eq!(redact("I'm ana@acme.io, call +44 7700 900123 or 077-0090-0123 about plan 50 in 2026"), "I'm [email] call [number] or [number] about plan 50 in 2026");
        let body = request_body("m", "does SSO work? ana@acme.io", &[Source { title: "SSO".into(), text: "Z".repeat(5_000) }]);
        let system = body["messages"][0]["content"].as_str().unwrap();
        assert!(system.contains("[1] SSO\n") && system.matches('Z').count() == SOURCE_CHARS, "articles cut to {SOURCE_CHARS} characters");
        assert_eq!(body["messages"][1]["content"], "does SSO work? [email]");
        assert_eq!(body["model"], "m");
    }
}
