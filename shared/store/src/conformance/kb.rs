//! Conformance tests of the knowledge base: articles with versions and soft delete, stored
//! passage embeddings, conversations with their messages, and the additive KB counters.

use crm_schemas::{
    Article, ArticleEmbedding, ArticleStatus, Conversation, ConversationMessage, ConversationStatus, KbCounter, MessageAuthor,
};

use super::*;

pub fn sample_article(site: &str, id: &str, version: u32) -> Article {
    Article {
        site_id: site.into(),
        article_id: id.into(),
        slug: format!("slug-{id}"),
        title: format!("Title {id} v{version}"),
        body_md: format!("Body of {id}, version {version}. Ünïcödé ✓"),
        body_html: format!("<p>Body of {id}, version {version}.</p>"),
        category: Some("getting-started".into()),
        tags: vec!["sso".into(), "login".into()],
        status: ArticleStatus::Published,
        version,
        created_at_ms: T0,
        created_by: "ana".into(),
        updated_at_ms: T0 + version as i64,
        updated_by: format!("user{version}"),
        published_at_ms: Some(T0),
        deleted_at_ms: None,
    }
}

pub async fn kb_articles_keep_versions_and_soft_delete(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let first = sample_article("s1", "art_b", 1);
    store.put_article(&first, &first.version_row("ana", T0)).await.expect("put v1");
    let mut second = sample_article("s1", "art_b", 2);
    second.status = ArticleStatus::Draft;
    store.put_article(&second, &second.version_row("bo", T0 + 5)).await.expect("put v2");
    let other = sample_article("s1", "art_a", 1);
    store.put_article(&other, &other.version_row("ana", T0)).await.expect("put other");
    let prefixed = sample_article("s10", "art_a", 1); // a site id with s1 as prefix
    store.put_article(&prefixed, &prefixed.version_row("ana", T0)).await.expect("put s10");

    assert_eq!(store.article("s1", "art_b").await.unwrap(), Some(second.clone()));
    assert_eq!(store.article("s1", "art_zz").await.unwrap(), None);
    assert_eq!(store.article("s2", "art_b").await.unwrap(), None);
    let ids: Vec<_> = store.articles("s1").await.unwrap().into_iter().map(|a| a.article_id).collect();
    assert_eq!(ids, ["art_a", "art_b"]);

    let versions = store.article_versions("s1", "art_b", 10).await.unwrap();
    let seen: Vec<_> = versions.iter().map(|v| (v.version, v.author.as_str(), v.at_ms, v.status)).collect();
    assert_eq!(seen, [(2, "bo", T0 + 5, ArticleStatus::Draft), (1, "ana", T0, ArticleStatus::Published)]);
    assert_eq!(store.article_versions("s1", "art_b", 1).await.unwrap().len(), 1);
    assert!(store.article_versions("s1", "art_none", 10).await.unwrap().is_empty());

    let mut deleted = sample_article("s1", "art_b", 3);
    deleted.deleted_at_ms = Some(T0 + 9);
    store.put_article(&deleted, &deleted.version_row("bo", T0 + 9)).await.expect("soft delete");
    drop(store);

    let store = harness.open().await;
    let kept = store.article("s1", "art_b").await.unwrap().expect("a soft-deleted article is kept");
    assert_eq!(kept.deleted_at_ms, Some(T0 + 9));
    assert!(!kept.is_live());
    assert_eq!(store.articles("s1").await.unwrap().len(), 2, "listing includes soft-deleted articles");
    let versions = store.article_versions("s1", "art_b", 10).await.unwrap();
    assert_eq!(versions.len(), 3);
    assert!(versions[0].deleted && !versions[1].deleted);
    assert_eq!(store.articles("s10").await.unwrap(), [prefixed]);
}

fn embedding(site: &str, id: &str, model: &str, floats: Vec<f32>) -> ArticleEmbedding {
    ArticleEmbedding { site_id: site.into(), article_id: id.into(), model: model.into(), content_hash: format!("h-{model}"), dimensions: 384, vectors: floats }
}

pub async fn kb_embeddings_round_trip_bit_exact(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let mut floats: Vec<f32> = (0..384 * 6).map(|i| ((i as f32) * 0.618_034).sin() / 7.0).collect();
    floats[0] = -0.0;
    floats[1] = f32::MIN_POSITIVE / 4.0; // subnormal
    floats[2] = f32::MAX;
    floats[3] = 1.0e-38;
    store.put_article_embedding(&embedding("s1", "art_a", "m1", floats.clone())).await.expect("put");
    store.put_article_embedding(&embedding("s1", "art_b", "m1", vec![0.5; 384])).await.expect("put");
    store.put_article_embedding(&embedding("s2", "art_a", "m1", vec![1.0; 384])).await.expect("put");
    store.put_article_embedding(&embedding("s1", "art_b", "m2", vec![0.25; 768])).await.expect("replace");

    let stored = store.article_embeddings("s1").await.unwrap();
    assert_eq!(stored.iter().map(|e| e.article_id.as_str()).collect::<Vec<_>>(), ["art_a", "art_b"]);
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&stored[0].vectors), bits(&floats), "floats come back bit for bit");
    assert_eq!((stored[1].model.as_str(), stored[1].content_hash.as_str(), stored[1].vectors.len()), ("m2", "h-m2", 768));
    assert_eq!(store.article_embeddings("s2").await.unwrap().len(), 1);
    assert!(store.article_embeddings("s3").await.unwrap().is_empty());
}

fn conversation(site: &str, n: u128, started: i64) -> Conversation {
    Conversation {
        site_id: site.into(),
        conversation_id: Uuid::from_u128(n).to_string(),
        visitor_id: Some(format!("v{n}")),
        status: ConversationStatus::Open,
        started_at_ms: started,
        updated_at_ms: started,
        messages: 0,
        article_ids: vec![],
        assigned_to: None,
        fields: BTreeMap::new(),
        token_hash: format!("hash-{n}"),
        pending_field: None,
        session_id: Some("s1".into()),
        declined: Vec::new(),
    }
}

fn message(site: &str, conversation: &Conversation, n: u128, at: i64, author: MessageAuthor) -> ConversationMessage {
    ConversationMessage {
        site_id: site.into(),
        conversation_id: conversation.conversation_id.clone(),
        message_id: Uuid::from_u128(1_000 + n).to_string(),
        at_ms: at,
        author,
        agent: None,
        text: format!("<b>message {n}</b> \"quoted\" ✓"),
        article_ids: vec![],
    }
}

pub async fn kb_conversations_page_newest_first_and_messages_once(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    // Two conversations share a start time: the page order breaks the tie by id.
    for (n, started) in [(1, T0), (2, T0 + 10), (3, T0 + 10), (4, T0 + 20), (5, T0 + 30)] {
        store.put_conversation(&conversation("s1", n, started)).await.expect("put");
    }
    store.put_conversation(&conversation("s10", 9, T0)).await.expect("put other site");
    let mut updated = conversation("s1", 4, T0 + 20);
    updated.status = ConversationStatus::HandedOff;
    updated.assigned_to = Some("bo".into());
    updated.fields.insert("email".into(), "ana@acme.io".into());
    updated.messages = 3;
    store.put_conversation(&updated).await.expect("replace");

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.conversations("s1", 2, cursor.as_deref()).await.expect("page");
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|c| (c.started_at_ms, c.conversation_id.clone())));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<_> = [(5, T0 + 30), (4, T0 + 20), (3, T0 + 10), (2, T0 + 10), (1, T0)]
        .into_iter()
        .map(|(n, t)| (t, Uuid::from_u128(n).to_string()))
        .collect();
    assert_eq!(seen, expected, "newest first, each once");
    assert_eq!(store.conversation("s1", &updated.conversation_id).await.unwrap(), Some(updated.clone()));
    assert_eq!(store.conversation("s2", &updated.conversation_id).await.unwrap(), None);
    assert_eq!(store.conversation("s1", "not-a-uuid").await.unwrap(), None);

    let c = conversation("s1", 1, T0);
    let batch = vec![
        message("s1", &c, 2, T0 + 2, MessageAuthor::Assistant),
        message("s1", &c, 1, T0 + 1, MessageAuthor::Visitor),
        message("s1", &c, 3, T0 + 2, MessageAuthor::Agent),
    ];
    store.add_messages(&batch).await.expect("add");
    let mut retried = batch[0].clone();
    retried.text = "a retried send is not a second message".into();
    store.add_messages(&[retried]).await.expect("retry");
    store.add_messages(&[message("s1", &conversation("s1", 2, T0), 9, T0, MessageAuthor::Visitor)]).await.expect("other conversation");
    drop(store);

    let store = harness.open().await;
    let stored = store.messages("s1", &c.conversation_id, 100).await.unwrap();
    let order: Vec<_> = stored.iter().map(|m| m.message_id.clone()).collect();
    let id = |n: u128| Uuid::from_u128(1_000 + n).to_string();
    assert_eq!(order, [id(1), id(2), id(3)], "oldest first, ties by id, each once");
    assert_eq!(stored[1].text, batch[0].text, "the first write of an id wins");
    assert_eq!(store.messages("s1", &c.conversation_id, 2).await.unwrap().len(), 2);
    assert!(store.messages("s2", &c.conversation_id, 10).await.unwrap().is_empty());
    let page = store.conversations("s1", 10, None).await.unwrap();
    assert_eq!(page.items.len(), 5, "replacing a conversation does not duplicate it");
}

pub async fn kb_counters_sum_per_key_and_window(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let day = 20_000;
    let c = |site: &str, d: i64, article: &str, query: &str, views: u64, searches: u64| KbCounter {
        views,
        searches,
        ..KbCounter::key(site, d, article, query)
    };
    store.add_kb_counters(&[c("s1", day, "", "", 0, 3), c("s1", day, "art_a", "", 2, 0), c("s1", day + 1, "", "", 0, 1)]).await.unwrap();
    store
        .add_kb_counters(&[
            c("s1", day, "art_a", "", 5, 0),
            KbCounter { no_result_searches: 1, ..c("s1", day, "", "how to sso", 0, 0) },
            c("s1", day + 2, "", "", 0, 7),
            c("s10", day, "", "", 0, 100),
        ])
        .await
        .unwrap();
    store
        .add_kb_counters(&[
            KbCounter { helpful_yes: 1, helpful_no: 2, deflections: 3, handoffs: 4, ..c("s1", day, "art_a", "", 1, 0) },
            KbCounter { no_result_searches: 1, ..c("s1", day, "", "how to sso", 0, 0) },
        ])
        .await
        .unwrap();
    drop(store);

    let store = harness.open().await;
    let rows = store.kb_counters("s1", day, day + 2).await.unwrap();
    let expected = vec![
        c("s1", day, "", "", 0, 3),
        KbCounter { no_result_searches: 2, ..c("s1", day, "", "how to sso", 0, 0) },
        KbCounter { helpful_yes: 1, helpful_no: 2, deflections: 3, handoffs: 4, ..c("s1", day, "art_a", "", 8, 0) },
        c("s1", day + 1, "", "", 0, 1),
    ];
    assert_eq!(rows, expected, "summed per key, ordered by (day, article, query), to_day excluded");
    assert_eq!(store.kb_counters("s1", day + 2, day + 3).await.unwrap().len(), 1);
    assert!(store.kb_counters("s1", day + 3, day).await.unwrap().is_empty());
    assert_eq!(store.kb_counters("s10", day, day + 1).await.unwrap()[0].searches, 100);
}
