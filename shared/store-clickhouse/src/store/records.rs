//! The ClickHouse store's low-volume roles: workflow (alerts, insights, tasks), accounts (imports
//! and health), configuration (sites, users, tokens, audit, forms, meta) and the knowledge base, over the sibling
//! modules' queries.

use super::*;

#[async_trait]
impl WorkflowStore for ClickHouseStore {
    async fn due_insight_requests(&self, now_ms: i64, limit: usize) -> Result<Vec<InsightRequest>> {
        self.get_due_insight_requests(now_ms, limit).await
    }

    async fn update_insight_request(&self, request: &InsightRequest) -> Result<()> {
        self.upsert_insight_requests(std::slice::from_ref(request)).await
    }

    async fn put_insight(&self, insight: &LeadInsight) -> Result<()> {
        self.save_insight(insight).await
    }

    async fn insight(&self, site_id: &str, lead_id: &str) -> Result<Option<LeadInsight>> {
        self.get_insight(site_id, lead_id).await
    }

    async fn add_tasks(&self, tasks: &[Task]) -> Result<usize> {
        self.insert_new_tasks(tasks).await
    }

    async fn update_task(&self, task: &Task) -> Result<()> {
        self.save_task(task).await
    }

    async fn tasks(&self, site_id: &str) -> Result<Vec<Task>> {
        self.get_tasks(site_id).await
    }

    async fn put_alert_rule(&self, rule: &AlertRule) -> Result<()> {
        self.save_alert_rule(rule).await
    }

    async fn alert_rules(&self, site_id: &str) -> Result<Vec<AlertRule>> {
        self.get_alert_rules(site_id).await
    }

    async fn delete_alert_rule(&self, site_id: &str, rule_id: &str) -> Result<bool> {
        self.remove_alert_rule(site_id, rule_id).await
    }

    async fn due_alerts(&self, now_ms: i64, limit: usize) -> Result<Vec<Alert>> {
        self.get_due_alerts(now_ms, limit).await
    }

    async fn update_alert(&self, alert: &Alert) -> Result<()> {
        self.save_alert(alert).await
    }

    async fn alerts(&self, site_id: &str, limit: usize) -> Result<Vec<Alert>> {
        self.get_alerts(site_id, limit).await
    }
}

#[async_trait]
impl AccountStore for ClickHouseStore {
    async fn import(&self, site_id: &str, batch: &ImportBatch) -> Result<()> {
        self.import_business(site_id, batch).await
    }

    async fn business_data(&self, site_id: &str) -> Result<BusinessData> {
        self.read_business(site_id).await
    }

    async fn put_health(&self, results: &[AccountHealth]) -> Result<()> {
        self.save_health(results).await
    }

    async fn health_history(&self, site_id: &str, account_id: &str, limit: usize) -> Result<Vec<AccountHealth>> {
        self.get_health_history(site_id, account_id, limit).await
    }

    async fn latest_health(&self, site_id: &str) -> Result<Vec<AccountHealth>> {
        self.get_latest_health(site_id).await
    }
}

#[async_trait]
impl ConfigStore for ClickHouseStore {
    async fn put_site(&self, site: &Site) -> Result<()> {
        self.put_keyed("sites", &site.site_id, site).await
    }

    async fn site(&self, site_id: &str) -> Result<Option<Site>> {
        self.get_keyed("sites", site_id).await
    }

    async fn sites(&self) -> Result<Vec<Site>> {
        self.all_keyed("sites").await
    }

    async fn put_user(&self, user: &User) -> Result<()> {
        self.put_keyed("users", &user.username, user).await
    }

    async fn user(&self, username: &str) -> Result<Option<User>> {
        self.get_keyed("users", username).await
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.all_keyed("users").await
    }

    async fn put_refresh_token(&self, token: &RefreshToken) -> Result<()> {
        self.save_refresh_token(token).await
    }

    async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshToken>> {
        self.get_refresh_token(token_hash).await
    }

    async fn revoke_refresh_tokens(&self, username: &str, family_id: Option<&str>, at_ms: i64) -> Result<usize> {
        self.revoke_tokens(username, family_id, at_ms).await
    }

    async fn append_auth_audit(&self, entry: &AuthAuditEntry) -> Result<()> {
        self.insert_auth_audit(entry).await
    }

    async fn auth_audit(&self, username: Option<&str>, limit: usize, cursor: Option<&str>) -> Result<Page<AuthAuditEntry>> {
        self.get_auth_audit(username, limit, cursor).await
    }

    async fn put_form(&self, form: &FormDefinition) -> Result<()> {
        let row = DeletableRow { key: form_key(&form.site_id, &form.form_id), version: now_nanos(), deleted: 0, body: encode(form)? };
        self.insert_rows("forms", &[row]).await
    }

    async fn form(&self, site_id: &str, form_id: &str) -> Result<Option<FormDefinition>> {
        let query = self.client.query("SELECT body FROM forms FINAL WHERE key = ? AND deleted = 0").bind(form_key(site_id, form_id));
        Ok(self.bodies(query).await?.into_iter().next())
    }

    async fn forms(&self, site_id: &str) -> Result<Vec<FormDefinition>> {
        let query = self.client.query("SELECT body FROM forms FINAL WHERE startsWith(key, ?) AND deleted = 0 ORDER BY key").bind(format!("{site_id}/"));
        self.bodies(query).await
    }

    async fn delete_form(&self, site_id: &str, form_id: &str) -> Result<bool> {
        if self.form(site_id, form_id).await?.is_none() {
            return Ok(false);
        }
        let row = DeletableRow { key: form_key(site_id, form_id), version: now_nanos(), deleted: 1, body: String::new() };
        self.insert_rows("forms", &[row]).await?;
        Ok(true)
    }

    async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let value: Option<String> = self.get_keyed("meta", key).await?;
        value.map(|hex| decode_hex(&hex)).transpose()
    }

    async fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        self.put_keyed("meta", key, &encode_hex(value)).await
    }

    async fn ping(&self) -> Result<()> {
        self.client.query("SELECT 1").execute().await.map_err(ch_err)
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Result<Vec<u8>> {
    if text.len() % 2 != 0 {
        return Err(StoreError::Corrupt("meta value is not hex".into()));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| StoreError::Corrupt("meta value is not hex".into())))
        .collect()
}

#[async_trait]
impl KnowledgeStore for ClickHouseStore {
    async fn put_article(&self, article: &Article, version: &ArticleVersion) -> Result<()> {
        self.insert_article(article, version).await
    }

    async fn article(&self, site_id: &str, article_id: &str) -> Result<Option<Article>> {
        self.get_article(site_id, article_id).await
    }

    async fn articles(&self, site_id: &str) -> Result<Vec<Article>> {
        self.get_articles(site_id).await
    }

    async fn article_versions(&self, site_id: &str, article_id: &str, limit: usize) -> Result<Vec<ArticleVersion>> {
        self.get_article_versions(site_id, article_id, limit).await
    }

    async fn put_article_embedding(&self, embedding: &ArticleEmbedding) -> Result<()> {
        self.insert_embedding(embedding).await
    }

    async fn article_embeddings(&self, site_id: &str) -> Result<Vec<ArticleEmbedding>> {
        self.get_embeddings(site_id).await
    }

    async fn put_conversation(&self, conversation: &Conversation) -> Result<()> {
        self.insert_conversation(conversation).await
    }

    async fn conversation(&self, site_id: &str, conversation_id: &str) -> Result<Option<Conversation>> {
        self.get_conversation(site_id, conversation_id).await
    }

    async fn conversations(&self, site_id: &str, limit: usize, cursor: Option<&str>) -> Result<Page<Conversation>> {
        self.get_conversations(site_id, limit, cursor).await
    }

    async fn add_messages(&self, messages: &[ConversationMessage]) -> Result<()> {
        self.insert_messages(messages).await
    }

    async fn messages(&self, site_id: &str, conversation_id: &str, limit: usize) -> Result<Vec<ConversationMessage>> {
        self.get_messages(site_id, conversation_id, limit).await
    }

    async fn add_kb_counters(&self, deltas: &[KbCounter]) -> Result<()> {
        self.insert_counters(deltas).await
    }

    async fn kb_counters(&self, site_id: &str, from_day: i64, to_day: i64) -> Result<Vec<KbCounter>> {
        self.get_counters(site_id, from_day, to_day).await
    }
}
