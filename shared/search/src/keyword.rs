//! Keyword ranking: BM25 on a tantivy index held in memory (articles live in the stores, and a
//! site's help centre re-indexes in well under a second per thousand articles at start).
//!
//! Title and body are indexed with English stemming and stop words ("pricing" finds "price",
//! "prices"); the title weighs twice the body. Typos are forgiven on a third field holding the
//! unstemmed words: each query word of four letters or more also matches words one edit away
//! (two from eight letters), at a fraction of an exact match's score, so exact terms still rank
//! first. An article must match a share of the query's words (all of one or two, half of three
//! or more): a question like "sign in with our company identity provider" is not answered by
//! whatever article says "sign", which would otherwise outrank the article the question means
//! in the fused ranking. The query is plain text: the query language's operators are not
//! exposed to visitors (a `site_id:` or a `*` in the search box is just punctuation).

use std::sync::Mutex;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING};
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::{Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::{Doc, Result};

const STEMMED: &str = "en_stem";
const WORDS: &str = "en_words";
/// Query words searched (a search box sends a few; the rest of a pasted paragraph is ignored).
const MAX_QUERY_WORDS: usize = 32;
/// Weight of a title match against a body match.
const TITLE_BOOST: f32 = 2.0;
/// Score of a typo-tolerant match relative to one exact term's BM25 (typically 1–10).
const FUZZY_BOOST: f32 = 0.3;
/// Characters of body text a snippet shows.
pub const SNIPPET_CHARS: usize = 180;

/// Words of how people ask rather than of what they ask about (pronouns, auxiliaries, question
/// words, greetings), dropped from queries but not from the index.
const QUESTION_WORDS: &[&str] = &[
    "i", "me", "my", "we", "us", "our", "you", "your", "do", "does", "did", "can", "could", "would", "should", "how", "what", "when", "where",
    "why", "which", "who", "please", "hi", "hello", "hey", "thanks", "am", "im",
];

struct Fields {
    key: Field,
    site: Field,
    id: Field,
    title: Field,
    body: Field,
    words: Field,
}

pub struct KeywordIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
}

/// The result of one keyword search: ids with BM25 scores, best first, and what highlights
/// the query's terms in a text.
pub struct KeywordSearch {
    pub hits: Vec<(String, f32)>,
    snippets: Option<SnippetGenerator>,
}

impl KeywordSearch {
    /// `text`'s best passage with the query's terms in `<mark>`, HTML-escaped; `None` when no
    /// term of the query occurs in it.
    pub fn snippet_html(&self, text: &str) -> Option<String> {
        let mut snippet = self.snippets.as_ref()?.snippet(text);
        if snippet.highlighted().is_empty() {
            return None;
        }
        snippet.set_snippet_prefix_postfix("<mark>", "</mark>");
        Some(snippet.to_html())
    }
}

impl KeywordIndex {
    pub fn new() -> Result<KeywordIndex> {
        let mut schema = Schema::builder();
        let text = |tokenizer: &str, stored: bool| {
            let options = TextOptions::default().set_indexing_options(TextFieldIndexing::default().set_tokenizer(tokenizer).set_index_option(IndexRecordOption::WithFreqs));
            if stored {
                options.set_stored()
            } else {
                options
            }
        };
        let fields = Fields {
            key: schema.add_text_field("key", STRING),
            site: schema.add_text_field("site", STRING),
            id: schema.add_text_field("id", STORED),
            title: schema.add_text_field("title", text(STEMMED, false)),
            body: schema.add_text_field("body", text(STEMMED, false)),
            words: schema.add_text_field("words", text(WORDS, false)),
        };
        let index = Index::create_in_ram(schema.build());
        let analyzer = |stem: bool| {
            let base = TextAnalyzer::builder(SimpleTokenizer::default()).filter(RemoveLongFilter::limit(40)).filter(LowerCaser).filter(StopWordFilter::new(Language::English).expect("English stop words ship with tantivy"));
            if stem {
                base.filter(Stemmer::new(Language::English)).build()
            } else {
                base.build()
            }
        };
        index.tokenizers().register(STEMMED, analyzer(true));
        index.tokenizers().register(WORDS, analyzer(false));
        // One indexing thread with tantivy's smallest arena: articles arrive a few at a time.
        let writer = index.writer_with_num_threads(1, 15_000_000)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(KeywordIndex { index, reader, writer: Mutex::new(writer), fields })
    }

    fn key(site_id: &str, id: &str) -> String {
        format!("{site_id}\u{1f}{id}")
    }

    /// Adds or replaces `docs` and makes them searchable (one commit for all of them).
    pub fn upsert(&self, docs: &[Doc]) -> Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        for doc in docs {
            let key = Self::key(&doc.site_id, &doc.id);
            writer.delete_term(Term::from_field_text(self.fields.key, &key));
            let mut indexed = TantivyDocument::default();
            indexed.add_text(self.fields.key, &key);
            indexed.add_text(self.fields.site, &doc.site_id);
            indexed.add_text(self.fields.id, &doc.id);
            indexed.add_text(self.fields.title, &doc.title);
            indexed.add_text(self.fields.body, &doc.body);
            indexed.add_text(self.fields.words, &doc.title);
            indexed.add_text(self.fields.words, &doc.body);
            writer.add_document(indexed)?;
        }
        writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Removes a site's article from the index.
    pub fn remove(&self, site_id: &str, id: &str) -> Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer.delete_term(Term::from_field_text(self.fields.key, &Self::key(site_id, id)));
        writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// The `limit` best articles of `site_id` for the plain-text `query`.
    pub fn search(&self, site_id: &str, query: &str, limit: usize) -> Result<KeywordSearch> {
        let text = plain_text(query);
        if text.trim().is_empty() || limit == 0 {
            return Ok(KeywordSearch { hits: Vec::new(), snippets: None });
        }
        // The two analyzers differ only by the stemmer, so their tokens pair up one to one.
        let tokens = |name: &str| {
            let mut analyzer = self.index.tokenizers().get(name).expect("registered in new");
            let mut stream = analyzer.token_stream(&text);
            let mut out = Vec::new();
            while let Some(token) = stream.next() {
                out.push(token.text.clone());
            }
            out
        };
        let mut seen = std::collections::HashSet::new();
        let all: Vec<(String, String)> = tokens(STEMMED).into_iter().zip(tokens(WORDS)).filter(|(stem, _)| seen.insert(stem.clone())).collect();
        // A question's filler ("do you", "how can I") would count against the half-of-the-words
        // rule; it goes unless it is all there is.
        let content: Vec<(String, String)> = all.iter().filter(|(_, word)| !QUESTION_WORDS.contains(&word.as_str())).cloned().collect();
        let terms: Vec<(String, String)> = if content.is_empty() { all } else { content }.into_iter().take(MAX_QUERY_WORDS).collect();
        if terms.is_empty() {
            return Ok(KeywordSearch { hits: Vec::new(), snippets: None });
        }
        let exact_body: Vec<(Occur, Box<dyn Query>)> = terms.iter().map(|(stem, _)| (Occur::Should, Box::new(TermQuery::new(Term::from_field_text(self.fields.body, stem), IndexRecordOption::WithFreqs)) as Box<dyn Query>)).collect();
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|(stem, word)| {
                let exact = |field: Field| Box::new(TermQuery::new(Term::from_field_text(field, stem), IndexRecordOption::WithFreqs));
                let mut either: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Should, Box::new(BoostQuery::new(exact(self.fields.title), TITLE_BOOST))), (Occur::Should, exact(self.fields.body))];
                let chars = word.chars().count();
                if chars >= 4 {
                    let fuzzy = FuzzyTermQuery::new(Term::from_field_text(self.fields.words, word), if chars >= 8 { 2 } else { 1 }, true);
                    either.push((Occur::Should, Box::new(BoostQuery::new(Box::new(fuzzy), FUZZY_BOOST))));
                }
                (Occur::Should, Box::new(BooleanQuery::new(either)) as Box<dyn Query>)
            })
            .collect();
        let required = if clauses.len() <= 2 { 1 } else { clauses.len().div_ceil(2) };
        let words = BooleanQuery::with_minimum_required_clauses(clauses, required);
        let site = TermQuery::new(Term::from_field_text(self.fields.site, site_id), IndexRecordOption::Basic);
        let query = BooleanQuery::new(vec![(Occur::Must, Box::new(site)), (Occur::Must, Box::new(words))]);
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(limit).order_by_score())?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            if let Some(id) = doc.get_first(self.fields.id).and_then(|v| v.as_str()) {
                hits.push((id.to_owned(), score));
            }
        }
        let mut snippets = SnippetGenerator::create(&searcher, &BooleanQuery::new(exact_body), self.fields.body)?;
        snippets.set_max_num_chars(SNIPPET_CHARS);
        Ok(KeywordSearch { hits, snippets: Some(snippets) })
    }

    /// Articles indexed (all sites).
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The query with everything but letters, digits and spaces turned into spaces: a search box
/// takes words, not query syntax.
pub fn plain_text(query: &str) -> String {
    query.chars().map(|c| if c.is_alphanumeric() || c.is_whitespace() { c } else { ' ' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(site: &str, id: &str, title: &str, body: &str) -> Doc {
        Doc { site_id: site.into(), id: id.into(), title: title.into(), body: body.into(), url: format!("/help/{site}/{id}") }
    }

    fn ids(search: &KeywordSearch) -> Vec<&str> {
        search.hits.iter().map(|(id, _)| id.as_str()).collect()
    }

    fn index() -> KeywordIndex {
        let index = KeywordIndex::new().unwrap();
        index
            .upsert(&[
                doc("s1", "pricing", "Pricing and plans", "Our plans are priced per seat. Annual billing saves 20 percent."),
                doc("s1", "sso", "Single sign-on with SAML", "Connect Okta or Azure AD as your identity provider."),
                doc("s1", "export", "Exporting data", "Download a CSV export of your leads and their pricing tier."),
                doc("s2", "pricing", "Pricing", "Another site's pricing page."),
            ])
            .unwrap();
        index
    }

    #[test]
    fn bm25_with_stemming_ranks_the_title_match_first_and_stays_in_its_site() {
        let index = index();
        let found = index.search("s1", "prices", 10).unwrap();
        assert_eq!(ids(&found), ["pricing", "export"], "stemmed: prices → price; the title match first");
        assert_eq!(ids(&index.search("s2", "pricing", 10).unwrap()), ["pricing"]);
        assert!(index.search("s3", "pricing", 10).unwrap().hits.is_empty());
        let html = found.snippet_html("Our plans are priced per seat.").unwrap();
        assert!(html.contains("<mark>priced</mark>"), "{html}");
        assert!(found.snippet_html("nothing relevant here").is_none());
    }

    #[test]
    fn typos_are_forgiven_but_exact_terms_rank_first() {
        let index = index();
        assert_eq!(ids(&index.search("s1", "idenity provder", 10).unwrap()), ["sso"]);
        assert_eq!(ids(&index.search("s1", "exportng", 10).unwrap()), ["export"]);
        let found = index.search("s1", "seat", 10).unwrap();
        assert_eq!(found.hits.first().map(|(id, _)| id.as_str()), Some("pricing"));
    }

    #[test]
    fn how_a_question_is_asked_does_not_count_against_it() {
        let index = index();
        // "do", "you", "with" would make 5 words needing 3 matches; the article has 2 of them.
        assert_eq!(ids(&index.search("s1", "Do you support SAML with Okta?", 10).unwrap()), ["sso"]);
        assert_eq!(ids(&index.search("s1", "how can I export my leads", 10).unwrap()), ["export"]);
        // A query of filler alone is searched as it is.
        assert!(index.search("s1", "how do you do", 10).unwrap().hits.is_empty());
    }

    #[test]
    fn hostile_queries_are_plain_text() {
        let index = index();
        for query in ["site:s2 pricing", "pricing AND NOT sso", "*", "\"unterminated", "title:(", "pri*", "<script>alert(1)</script>", "", "   ", "\u{0}\u{1f}"] {
            let found = index.search("s1", query, 10).unwrap();
            assert!(found.hits.iter().all(|(id, _)| ["pricing", "sso", "export"].contains(&id.as_str())), "{query}");
        }
        let html = index.search("s1", "pricing", 1).unwrap().snippet_html("<b>pricing</b> & more").unwrap();
        assert!(html.contains("&lt;b&gt;<mark>pricing</mark>&lt;/b&gt;") && html.contains("&amp;") && !html.contains("<b>"), "the text around the marks is escaped: {html}");
    }

    #[test]
    fn upserts_replace_and_removals_delete() {
        let index = index();
        index.upsert(&[doc("s1", "sso", "Single sign-on", "Now about passkeys only.")]).unwrap();
        assert!(index.search("s1", "okta", 10).unwrap().hits.is_empty(), "the old text is gone");
        assert_eq!(ids(&index.search("s1", "passkeys", 10).unwrap()), ["sso"]);
        index.remove("s1", "sso").unwrap();
        assert!(index.search("s1", "passkeys", 10).unwrap().hits.is_empty());
        assert_eq!(index.len(), 3);
    }
}
