//! The assistant's deterministic answers: the knowledge base's most relevant passages with links
//! to their articles, and the two rules that hand a conversation to a person (the visitor asks
//! for one; the visitor asks about pricing).

use crm_search::Hit;

use crate::kb::public::answered;

pub struct Reply {
    pub text: String,
    pub article_ids: Vec<String>,
}

/// Plain text of a snippet the search crate marked up (escaped text plus `<mark>`).
pub fn snippet_text(html: &str) -> String {
    html.replace("<mark>", "").replace("</mark>", "").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

/// The answer to a question from its search hits: the best article's passage, and a second
/// article when it also matched well. Without a good hit: say so and offer a person.
pub fn compose(hits: &[Hit]) -> Reply {
    if !answered(hits) {
        return Reply {
            text: "I couldn't find an answer to that in our help centre. You can rephrase it, or ask to talk to a person.".into(),
            article_ids: Vec::new(),
        };
    }
    let good: Vec<&Hit> = hits.iter().take(2).filter(|h| h.keyword_rank.is_some() || h.similarity.is_some_and(|s| s >= crate::kb::public::GOOD_SIMILARITY)).collect();
    let best = good[0];
    let mut text = format!("From \"{}\": {}", best.title, snippet_text(&best.snippet_html));
    if let Some(second) = good.get(1) {
        text.push_str(&format!("\n\nSee also \"{}\".", second.title));
    }
    Reply { text, article_ids: good.iter().map(|h| h.id.clone()).collect() }
}

fn words(text: &str) -> Vec<String> {
    text.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

/// Whether the message asks for a person: one of the site's handoff phrases appears as whole words.
pub fn asks_for_person(text: &str, phrases: &[String]) -> bool {
    let message = format!(" {} ", words(text).join(" "));
    phrases.iter().any(|p| {
        let phrase = words(p).join(" ");
        !phrase.is_empty() && message.contains(&format!(" {phrase} "))
    })
}

/// Whether a message is phrased as a question (ends with `?` or opens like one).
pub fn is_question(text: &str) -> bool {
    const OPENERS: &[&str] = &["how", "what", "why", "when", "where", "which", "who", "can", "could", "do", "does", "is", "are", "will", "should"];
    text.trim_end().ends_with('?') || words(text).first().is_some_and(|w| OPENERS.contains(&w.as_str()))
}

/// Whether a chat message is worth counting as a search: a question or a topic ("pricing",
/// "quantum teleportation"), not chatter ("thanks!", "ok", "great, cheers").
pub fn looks_like_question(text: &str) -> bool {
    const CHATTER: &[&str] = &[
        "thanks", "thank", "you", "ok", "okay", "k", "hi", "hello", "hey", "yes", "no", "yep", "nope", "cool", "great", "cheers", "bye",
        "good", "nice", "sure", "please", "lol", "alright", "fine", "perfect", "awesome",
    ];
    is_question(text) || words(text).iter().any(|w| !CHATTER.contains(&w.as_str()))
}

/// Whether the message asks about price (a high-intent question sales should answer).
pub fn is_pricing_question(text: &str) -> bool {
    const PRICING: &[&str] = &["price", "prices", "pricing", "cost", "costs", "quote", "discount", "discounts", "seats", "licence", "license", "billing"];
    words(text).iter().any(|w| PRICING.contains(&w.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: &str, keyword_rank: Option<usize>, similarity: Option<f32>) -> Hit {
        Hit { id: id.into(), title: format!("Title {id}"), url: format!("/help/s/a/{id}"), snippet_html: "Use <mark>SAML</mark> &amp; Okta &lt;3".into(), score: 0.1, keyword_rank, similarity }
    }

    #[test]
    fn answers_cite_the_best_articles() {
        let reply = compose(&[hit("a", Some(1), None), hit("b", None, Some(0.5)), hit("c", Some(3), None)]);
        assert_eq!(reply.text, "From \"Title a\": Use SAML & Okta <3\n\nSee also \"Title b\".");
        assert_eq!(reply.article_ids, ["a", "b"]);
        let weak = compose(&[hit("a", Some(1), None), hit("b", None, Some(0.21))]);
        assert_eq!(weak.article_ids, ["a"], "a weak second hit is not cited");
        let none = compose(&[hit("z", None, Some(0.22))]);
        assert!(none.article_ids.is_empty() && none.text.contains("talk to a person"));
    }

    #[test]
    fn handoff_phrases_match_whole_words() {
        let phrases: Vec<String> = ["talk to a person", "human", "sales"].iter().map(|s| s.to_string()).collect();
        assert!(asks_for_person("Can I TALK to a person, please?", &phrases));
        assert!(asks_for_person("human!", &phrases));
        assert!(!asks_for_person("humane treatment of salesforce data", &phrases));
        assert!(!asks_for_person("anything", &[]));
        assert!(is_pricing_question("What does it cost for 50 seats?"));
        for question in ["sso?", "How do I export", "does it support okta", "exporting leads to a spreadsheet", "pricing", "quantum teleportation"] {
            assert!(looks_like_question(question), "{question}");
        }
        for chatter in ["thanks!", "ok", "great, cheers", "Thank you :)"] {
            assert!(!looks_like_question(chatter), "{chatter}");
        }
        assert!(is_question("Is there an API?") && is_question("how about SSO") && !is_question("Acme Corp"));
        assert!(!is_pricing_question("How do I set up SSO?"));
    }
}
