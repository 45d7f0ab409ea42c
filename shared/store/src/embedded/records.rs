//! The embedded store's low-volume roles: workflow (alerts, insights, tasks), accounts (imports
//! and health), configuration (sites, users, tokens, audit, forms, meta) and the knowledge base. Each method opens one
//! redb transaction; the table logic lives in the sibling modules.

use super::*;

#[async_trait]
impl WorkflowStore for EmbeddedStore {
    async fn due_insight_requests(&self, now_ms: i64, limit: usize) -> Result<Vec<InsightRequest>> {
        self.blocking(move |db| insights::due(db, now_ms, limit)).await
    }

    async fn update_insight_request(&self, request: &InsightRequest) -> Result<()> {
        let request = request.clone();
        self.blocking(move |db| insights::update(db, &request)).await
    }

    async fn put_insight(&self, insight: &LeadInsight) -> Result<()> {
        let insight = insight.clone();
        self.blocking(move |db| insights::put(db, &insight)).await
    }

    async fn insight(&self, site_id: &str, lead_id: &str) -> Result<Option<LeadInsight>> {
        let (site, lead) = (site_id.to_owned(), lead_id.to_owned());
        self.blocking(move |db| insights::get(db, &site, &lead)).await
    }

    async fn add_tasks(&self, tasks: &[Task]) -> Result<usize> {
        let tasks = tasks.to_vec();
        self.blocking(move |db| business::add_tasks(db, &tasks)).await
    }

    async fn update_task(&self, task: &Task) -> Result<()> {
        let task = task.clone();
        self.blocking(move |db| business::update_task(db, &task)).await
    }

    async fn tasks(&self, site_id: &str) -> Result<Vec<Task>> {
        let site = site_id.to_owned();
        self.blocking(move |db| business::tasks(db, &site)).await
    }

    async fn put_alert_rule(&self, rule: &AlertRule) -> Result<()> {
        let rule = rule.clone();
        self.blocking(move |db| alerts::put_rule(db, &rule)).await
    }

    async fn alert_rules(&self, site_id: &str) -> Result<Vec<AlertRule>> {
        let site = site_id.to_owned();
        self.blocking(move |db| alerts::rules(db, &site)).await
    }

    async fn delete_alert_rule(&self, site_id: &str, rule_id: &str) -> Result<bool> {
        let (site, rule) = (site_id.to_owned(), rule_id.to_owned());
        self.blocking(move |db| alerts::delete_rule(db, &site, &rule)).await
    }

    async fn due_alerts(&self, now_ms: i64, limit: usize) -> Result<Vec<Alert>> {
        self.blocking(move |db| alerts::due(db, now_ms, limit)).await
    }

    async fn update_alert(&self, alert: &Alert) -> Result<()> {
        let alert = alert.clone();
        self.blocking(move |db| alerts::update(db, &alert)).await
    }

    async fn alerts(&self, site_id: &str, limit: usize) -> Result<Vec<Alert>> {
        let site = site_id.to_owned();
        self.blocking(move |db| alerts::list(db, &site, limit)).await
    }
}

#[async_trait]
impl AccountStore for EmbeddedStore {
    async fn import(&self, site_id: &str, batch: &ImportBatch) -> Result<()> {
        let (site, batch) = (site_id.to_owned(), batch.clone());
        self.blocking(move |db| business::import(db, &site, &batch)).await
    }

    async fn business_data(&self, site_id: &str) -> Result<BusinessData> {
        let site = site_id.to_owned();
        self.blocking(move |db| business::read(db, &site)).await
    }

    async fn put_health(&self, results: &[AccountHealth]) -> Result<()> {
        let results = results.to_vec();
        self.blocking(move |db| business::put_health(db, &results)).await
    }

    async fn health_history(&self, site_id: &str, account_id: &str, limit: usize) -> Result<Vec<AccountHealth>> {
        let (site, account) = (site_id.to_owned(), account_id.to_owned());
        self.blocking(move |db| business::health_history(db, &site, &account, limit)).await
    }

    async fn latest_health(&self, site_id: &str) -> Result<Vec<AccountHealth>> {
        let site = site_id.to_owned();
        self.blocking(move |db| business::latest_health(db, &site)).await
    }
}

#[async_trait]
impl ConfigStore for EmbeddedStore {
    async fn put_site(&self, site: &Site) -> Result<()> {
        let site = site.clone();
        self.blocking(move |db| put_json(db, SITES, &site.site_id, &site)).await
    }

    async fn site(&self, site_id: &str) -> Result<Option<Site>> {
        let id = site_id.to_owned();
        self.blocking(move |db| get_json(db, SITES, &id)).await
    }

    async fn sites(&self) -> Result<Vec<Site>> {
        self.blocking(|db| all_json(db, SITES)).await
    }

    async fn put_user(&self, user: &User) -> Result<()> {
        let user = user.clone();
        self.blocking(move |db| put_json(db, USERS, &user.username, &user)).await
    }

    async fn user(&self, username: &str) -> Result<Option<User>> {
        let name = username.to_owned();
        self.blocking(move |db| get_json(db, USERS, &name)).await
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.blocking(|db| all_json(db, USERS)).await
    }

    async fn put_refresh_token(&self, token: &RefreshToken) -> Result<()> {
        let token = token.clone();
        self.blocking(move |db| auth::put_token(db, &token)).await
    }

    async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshToken>> {
        let hash = token_hash.to_owned();
        self.blocking(move |db| auth::token(db, &hash)).await
    }

    async fn revoke_refresh_tokens(&self, username: &str, family_id: Option<&str>, at_ms: i64) -> Result<usize> {
        let (user, family) = (username.to_owned(), family_id.map(str::to_owned));
        self.blocking(move |db| auth::revoke(db, &user, family.as_deref(), at_ms)).await
    }

    async fn append_auth_audit(&self, entry: &AuthAuditEntry) -> Result<()> {
        let entry = entry.clone();
        self.blocking(move |db| auth::append_audit(db, &entry)).await
    }

    async fn auth_audit(&self, username: Option<&str>, limit: usize, cursor: Option<&str>) -> Result<Page<AuthAuditEntry>> {
        let (user, cursor) = (username.map(str::to_owned), cursor.map(str::to_owned));
        self.blocking(move |db| auth::audit(db, user.as_deref(), limit, cursor.as_deref())).await
    }

    async fn put_form(&self, form: &FormDefinition) -> Result<()> {
        let form = form.clone();
        self.blocking(move |db| put_json(db, FORMS, &format!("{}/{}", form.site_id, form.form_id), &form)).await
    }

    async fn form(&self, site_id: &str, form_id: &str) -> Result<Option<FormDefinition>> {
        let key = format!("{site_id}/{form_id}");
        self.blocking(move |db| get_json(db, FORMS, &key)).await
    }

    async fn forms(&self, site_id: &str) -> Result<Vec<FormDefinition>> {
        // '0' follows '/' in ASCII: the range covers exactly the "{site}/" prefix.
        let (from, to) = (format!("{site_id}/"), format!("{site_id}0"));
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(FORMS).map_err(db_err)?;
            let mut out = Vec::new();
            for row in table.range::<&str>(from.as_str()..to.as_str()).map_err(db_err)? {
                out.push(decode(row.map_err(db_err)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_form(&self, site_id: &str, form_id: &str) -> Result<bool> {
        let key = format!("{site_id}/{form_id}");
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            let existed = txn.open_table(FORMS).map_err(db_err)?.remove(key.as_str()).map_err(db_err)?.is_some();
            txn.commit().map_err(db_err)?;
            Ok(existed)
        })
        .await
    }

    async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(META).map_err(db_err)?;
            Ok(table.get(key.as_str()).map_err(db_err)?.map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            txn.open_table(META).map_err(db_err)?.insert(key.as_str(), value.as_slice()).map_err(db_err)?;
            txn.commit().map_err(db_err)
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.blocking(|db| db.begin_read().map(|_| ()).map_err(db_err)).await
    }
}

#[async_trait]
impl KnowledgeStore for EmbeddedStore {
    async fn put_article(&self, article: &Article, version: &ArticleVersion) -> Result<()> {
        let (article, version) = (article.clone(), version.clone());
        self.blocking(move |db| kb::put_article(db, &article, &version)).await
    }

    async fn article(&self, site_id: &str, article_id: &str) -> Result<Option<Article>> {
        let (site, id) = (site_id.to_owned(), article_id.to_owned());
        self.blocking(move |db| kb::article(db, &site, &id)).await
    }

    async fn articles(&self, site_id: &str) -> Result<Vec<Article>> {
        let site = site_id.to_owned();
        self.blocking(move |db| kb::articles(db, &site)).await
    }

    async fn article_versions(&self, site_id: &str, article_id: &str, limit: usize) -> Result<Vec<ArticleVersion>> {
        let (site, id) = (site_id.to_owned(), article_id.to_owned());
        self.blocking(move |db| kb::versions(db, &site, &id, limit)).await
    }

    async fn put_article_embedding(&self, embedding: &ArticleEmbedding) -> Result<()> {
        let embedding = embedding.clone();
        self.blocking(move |db| kb::put_embedding(db, &embedding)).await
    }

    async fn article_embeddings(&self, site_id: &str) -> Result<Vec<ArticleEmbedding>> {
        let site = site_id.to_owned();
        self.blocking(move |db| kb::embeddings(db, &site)).await
    }

    async fn put_conversation(&self, conversation: &Conversation) -> Result<()> {
        let conversation = conversation.clone();
        self.blocking(move |db| kb::put_conversation(db, &conversation)).await
    }

    async fn conversation(&self, site_id: &str, conversation_id: &str) -> Result<Option<Conversation>> {
        let (site, id) = (site_id.to_owned(), conversation_id.to_owned());
        self.blocking(move |db| kb::conversation(db, &site, &id)).await
    }

    async fn conversations(&self, site_id: &str, limit: usize, cursor: Option<&str>) -> Result<Page<Conversation>> {
        let (site, cursor) = (site_id.to_owned(), cursor.map(str::to_owned));
        self.blocking(move |db| kb::conversations(db, &site, limit, cursor.as_deref())).await
    }

    async fn add_messages(&self, messages: &[ConversationMessage]) -> Result<()> {
        let messages = messages.to_vec();
        self.blocking(move |db| kb::add_messages(db, &messages)).await
    }

    async fn messages(&self, site_id: &str, conversation_id: &str, limit: usize) -> Result<Vec<ConversationMessage>> {
        let (site, id) = (site_id.to_owned(), conversation_id.to_owned());
        self.blocking(move |db| kb::messages(db, &site, &id, limit)).await
    }

    async fn add_kb_counters(&self, deltas: &[KbCounter]) -> Result<()> {
        let deltas = deltas.to_vec();
        self.blocking(move |db| kb::add_counters(db, &deltas)).await
    }

    async fn kb_counters(&self, site_id: &str, from_day: i64, to_day: i64) -> Result<Vec<KbCounter>> {
        let site = site_id.to_owned();
        self.blocking(move |db| kb::counters(db, &site, from_day, to_day)).await
    }
}
