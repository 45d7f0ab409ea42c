//! The processing loop: poll a batch from the log, decode, drop replays, enrich, sessionise and
//! score, write everything in one store call (retrying while the store is down), then commit the
//! log position once the store reports the batch durable (commits.rs).
//!
//! Per-visitor state is cached in memory (bounded) and always recoverable from the store, so a
//! restarted processor continues exactly where the committed log position and store agree.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_eventlog::{Delivered, EventLog, LogConsumer, LogError, Topic};
use crm_schemas::{CollectedEvent, DeadLetter, Limits, Site, VisitorProfile};
use crm_service::Shutdown;
use crm_store::{Store, StoreError, WriteBatch};
use parking_lot::Mutex;

use crate::commits::{log_positions, PendingCommits};
use crate::{apply_event, Enricher, ProcessorMetrics, SiteRules};

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ProcessorError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ProcessorError::Log(e) => e.is_retryable(),
            ProcessorError::Store(e) => e.is_retryable(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ProcessorConfig {
    pub group: String,
    pub batch_size: usize,
    pub poll_wait: Duration,
    pub profile_cache_capacity: usize,
    /// Queue an AI insight when a lead is new or its score changes band (Low < 50 ≤ Medium < 80
    /// ≤ High). Only when an insight worker is configured.
    pub request_insights: bool,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            group: "stream-processor".into(),
            batch_size: 10_000,
            poll_wait: Duration::from_millis(100),
            profile_cache_capacity: 50_000,
            request_insights: false,
        }
    }
}

/// Shared status for readiness: the last store error, cleared by the next successful write.
#[derive(Default)]
pub struct ProcessorStatus {
    pub store_error: Mutex<Option<String>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub events_written: usize,
    pub duplicates: usize,
    pub dead_letters: usize,
    pub poison: usize,
    /// Events (and dead letters) of erased data subjects dropped (erasures.rs).
    pub erased: usize,
}

pub struct Processor {
    config: ProcessorConfig,
    store: Arc<dyn Store>,
    enricher: Enricher,
    limits: Limits,
    metrics: ProcessorMetrics,
    status: Arc<ProcessorStatus>,
    sites: HashMap<String, (Arc<SiteRules>, Instant)>,
    profiles: HashMap<(String, String), VisitorProfile>,
    alert_rules: HashMap<String, (Arc<Vec<crm_schemas::AlertRule>>, Instant)>,
    tombstones: erasures::Tombstones,
    /// Stored batches whose log position is not committed yet (the store has not made them
    /// durable).
    uncommitted: PendingCommits,
}

mod alerting;
mod erasures;
mod identity;


const SITE_TTL: Duration = Duration::from_secs(10);

/// One decodable event record with its log position.
struct Pending {
    event: crm_schemas::Event,
    collected: CollectedEvent,
    /// `{source}/{partition}`, shared by the batch's records of one partition.
    position: Arc<str>,
    offset: u64,
}

impl Processor {
    pub fn new(config: ProcessorConfig, store: Arc<dyn Store>, enricher: Enricher, metrics: ProcessorMetrics) -> Processor {
        Processor {
            config,
            store,
            enricher,
            limits: Limits::default(),
            metrics,
            status: Arc::new(ProcessorStatus::default()),
            sites: HashMap::new(),
            profiles: HashMap::new(),
            alert_rules: HashMap::new(),
            tombstones: erasures::Tombstones::default(),
            uncommitted: PendingCommits::default(),
        }
    }

    pub fn status(&self) -> Arc<ProcessorStatus> {
        self.status.clone()
    }

    async fn site_rules(&mut self, site_id: &str) -> Result<Arc<SiteRules>, StoreError> {
        if let Some((rules, at)) = self.sites.get(site_id) {
            if at.elapsed() < SITE_TTL {
                return Ok(rules.clone());
            }
        }
        // A site deleted after its events were accepted still gets processed with defaults.
        let site = self.store.site(site_id).await?.unwrap_or_else(|| Site::new(site_id, site_id, 0));
        let rules = Arc::new(SiteRules::new(&site));
        self.sites.insert(site_id.to_owned(), (rules.clone(), Instant::now()));
        Ok(rules)
    }

    /// Loads every profile the batch needs and the cache lacks, in one store call.
    async fn prefetch_profiles(&mut self, pending: &[Pending]) -> Result<(), StoreError> {
        let mut missing: Vec<(String, String)> = Vec::new();
        let mut asked: HashSet<(&str, &str)> = HashSet::new();
        for p in pending {
            let (Some(visitor), site) = (p.event.visitor_id.as_deref(), p.event.site_id.as_str()) else { continue };
            if asked.insert((site, visitor)) && !self.profiles.contains_key(&(site.to_owned(), visitor.to_owned())) {
                missing.push((site.to_owned(), visitor.to_owned()));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        for profile in self.store.visitors(&missing).await? {
            self.profiles.insert((profile.site_id.clone(), profile.visitor_id.clone()), profile);
        }
        for key in missing {
            self.profiles.entry(key).or_default();
        }
        Ok(())
    }

    /// Makes sure the visitor's profile is in the cache (loading it from the store).
    async fn load_profile(&mut self, key: &(String, String)) -> Result<(), StoreError> {
        if !self.profiles.contains_key(key) {
            let profile = self.store.visitor(&key.0, &key.1).await?.unwrap_or_default();
            self.profiles.insert(key.clone(), profile);
        }
        Ok(())
    }

    /// Turns delivered log records into one store batch and writes it. Does not commit.
    ///
    /// An event is stored unless its `event_id` is already stored, and applied to its visitor's
    /// profile unless the profile already records its log offset: together these make a replay
    /// exact even on stores that write profiles and events separately.
    pub async fn process(&mut self, delivered: &[Delivered], source: &str, shutdown: &Shutdown) -> Result<BatchOutcome, ProcessorError> {
        let mut outcome = BatchOutcome::default();
        let started_ms = now_ms();
        self.refresh_tombstones().await?;
        let mut pending = Vec::with_capacity(delivered.len());
        let mut batch = WriteBatch { log_positions: log_positions(delivered, source), ..WriteBatch::default() };
        let mut positions: Vec<(u32, Arc<str>)> = Vec::new();
        for record in delivered {
            match record.topic {
                Topic::Events => match decode_event(&record.payload, &self.limits) {
                    Ok((event, collected)) => {
                        let position = match positions.iter().find(|(partition, _)| *partition == record.partition) {
                            Some((_, position)) => position.clone(),
                            None => {
                                let position: Arc<str> = format!("{source}/{}", record.partition).into();
                                positions.push((record.partition, position.clone()));
                                position
                            }
                        };
                        pending.push(Pending { event, collected, position, offset: record.offset })
                    }
                    Err(reason) => {
                        outcome.poison += 1;
                        tracing::warn!(offset = record.offset, reason = %reason, "undecodable event record skipped");
                        if let Some(letter) = poison_letter(&record.payload, &reason) {
                            batch.dead_letters.push(letter);
                        }
                    }
                },
                Topic::DeadLetters => match serde_json::from_slice::<DeadLetter>(&record.payload) {
                    Ok(letter) => batch.dead_letters.push(letter),
                    Err(err) => {
                        outcome.poison += 1;
                        tracing::warn!(offset = record.offset, error = %err, "undecodable dead letter skipped");
                    }
                },
            }
        }

        // Replays: drop ids seen earlier in this batch, then ids the store already has.
        let decoded = pending.len();
        let mut seen = HashSet::with_capacity(pending.len());
        pending.retain(|p| seen.insert(p.event.event_id));
        let ids: Vec<_> = pending.iter().map(|p| p.event.event_id).collect();
        let unseen = if ids.is_empty() { HashSet::new() } else { self.store.unseen_event_ids(&ids).await? };
        pending.retain(|p| unseen.contains(&p.event.event_id));
        outcome.duplicates = decoded - pending.len();

        // The cache is bounded between batches, never while a batch holds dirty profiles.
        if self.profiles.len() >= self.config.profile_cache_capacity {
            self.profiles.clear();
        }
        self.prefetch_profiles(&pending).await?;
        let mut dirty: Vec<(String, String)> = Vec::new();
        let mut dirty_set: HashSet<(String, String)> = HashSet::new();
        let mut sessions = HashMap::new();
        let mut signals = Vec::new();
        for Pending { event, collected, position, offset } in pending {
            let (mut stored, facts) = self.enricher.enrich(event, &collected);
            if self.is_erased(&stored).await? {
                outcome.erased += 1;
                continue;
            }
            let rules = self.site_rules(&stored.site_id).await?;
            // The network signal needs the site's setting, so it is judged here, not in enrichment.
            if rules.datacenter_asn && !stored.is_bot && stored.geo.asn.is_some_and(crm_bots::is_datacenter_asn) {
                stored.is_bot = true;
            }
            let key = (stored.site_id.clone(), stored.visitor_id.clone());
            self.load_profile(&key).await?;
            let profile = self.profiles.get_mut(&key).expect("profile loaded");
            if profile.applied_offsets.get(&*position).is_some_and(|&applied| offset <= applied) {
                // The profile already includes this event (a crash hit between the profile and
                // event writes): store the event, derive its session on a scratch copy.
                let mut scratch = profile.clone();
                apply_event(&mut scratch, &mut stored, &rules, &facts);
            } else {
                if let Some(closed) = apply_event(profile, &mut stored, &rules, &facts) {
                    sessions.insert((closed.site_id.clone(), closed.session_id.clone()), closed);
                }
                match profile.applied_offsets.get_mut(&*position) {
                    Some(applied) => *applied = offset,
                    None => {
                        profile.applied_offsets.insert(position.to_string(), offset);
                    }
                }
                if dirty_set.insert(key.clone()) {
                    dirty.push(key);
                }
            }
            // Identity runs on replays too: linking is idempotent and a torn write may have
            // stored the profile's link but not the lead.
            signals.extend(identity::Signal::from_event(&stored));
            batch.events.push(stored);
        }
        // The open session of every visitor this batch's events touched, in its final state.
        for key in &dirty {
            if let Some(session) = self.profiles.get(key).and_then(|p| p.current_session.clone()) {
                sessions.insert((session.site_id.clone(), session.session_id.clone()), session);
            }
        }
        self.update_leads(signals, &mut dirty, &mut batch).await?;
        batch.visitors = dirty.iter().filter_map(|k| self.profiles.get(k).cloned()).collect();
        batch.sessions = sessions.into_values().collect();
        outcome.erased += self.drop_erased_letters(&mut batch.dead_letters).await?;
        outcome.dead_letters = batch.dead_letters.len();
        let touched: HashSet<(String, String)> = batch.visitors.iter().map(|p| (p.site_id.clone(), p.visitor_id.clone())).chain(batch.events.iter().map(|e| (e.site_id.clone(), e.visitor_id.clone()))).collect();
        let leads: HashSet<(String, String)> = batch.leads.iter().map(|l| (l.site_id.clone(), l.lead_id.clone())).collect();
        let written = self.write_with_retry(batch, shutdown).await?;
        outcome.events_written = written.events_written;
        outcome.duplicates += written.duplicates_skipped;
        self.erase_again_if_needed(started_ms, &touched, &leads).await?;
        Ok(outcome)
    }

    async fn write_with_retry(&mut self, batch: WriteBatch, shutdown: &Shutdown) -> Result<crm_store::WriteOutcome, ProcessorError> {
        let batch = Arc::new(batch);
        let mut delay = Duration::from_millis(100);
        loop {
            match self.store.write(batch.clone()).await {
                Ok(outcome) => {
                    *self.status.store_error.lock() = None;
                    return Ok(outcome);
                }
                Err(err) => {
                    self.metrics.store_errors.inc();
                    *self.status.store_error.lock() = Some(err.to_string());
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "store write failed; retrying");
                    if shutdown.is_triggered() {
                        // The cached profiles include this batch's effects; drop them so the
                        // replay after restart starts from the store.
                        self.profiles.clear();
                        return Err(err.into());
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait() => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Consumes `log` until `shutdown`, committing after every stored batch.
    pub async fn run(mut self, log: Arc<dyn EventLog>, shutdown: Shutdown) -> Result<(), ProcessorError> {
        let mut consumer = log.subscribe(&self.config.group, &Topic::ALL).await?;
        tracing::info!(group = %self.config.group, "stream processor started");
        while !shutdown.is_triggered() {
            let delivered = tokio::select! {
                polled = consumer.poll(self.config.batch_size, self.config.poll_wait) => polled,
                _ = shutdown.wait() => break,
            };
            let delivered = match delivered {
                Ok(delivered) => delivered,
                Err(err) if err.is_retryable() => {
                    tracing::warn!(error = %err, "log poll failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(err) => return Err(err.into()),
            };
            // A failed batch is retried as a whole (never skipped, never committed early);
            // the visitor cache is dropped first so no half-applied batch survives in memory.
            let mut delay = Duration::from_millis(100);
            loop {
                match self.handle(consumer.as_mut(), &delivered, &shutdown).await {
                    Ok(()) => break,
                    Err(err) if err.is_retryable() && !shutdown.is_triggered() => {
                        self.profiles.clear();
                        self.metrics.store_errors.inc();
                        *self.status.store_error.lock() = Some(err.to_string());
                        tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "batch failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = shutdown.wait() => {}
                        }
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                    Err(err) => {
                        self.profiles.clear();
                        return Err(err);
                    }
                }
            }
        }
        // Make the store durable to the end, then commit whatever it reports; anything left is
        // delivered again after restart.
        if !self.uncommitted.is_empty() {
            if let Err(err) = self.store.flush().await {
                tracing::warn!(error = %err, "store flush at stop failed; the last batches will be replayed");
            }
        }
        if let Err(err) = self.commit_durable(consumer.as_mut()).await {
            tracing::warn!(error = %err, "final log commit failed; the last batches will be replayed");
        }
        if !self.uncommitted.is_empty() {
            tracing::info!(batches = self.uncommitted.len(), "stopping with batches not yet durable; they will be replayed");
        }
        tracing::info!("stream processor stopped");
        Ok(())
    }

    /// Commits the log position of every stored batch, oldest first, that the store now reports
    /// durable.
    async fn commit_durable(&mut self, consumer: &mut dyn LogConsumer) -> Result<(), ProcessorError> {
        if !self.uncommitted.is_empty() {
            let durable = self.store.durable_positions();
            let ready = self.uncommitted.take_durable(&durable);
            if !ready.is_empty() {
                consumer.commit(&ready).await?;
            }
        }
        self.metrics.awaiting_durability.set(self.uncommitted.len() as u64);
        Ok(())
    }

    async fn handle(&mut self, consumer: &mut dyn LogConsumer, delivered: &[Delivered], shutdown: &Shutdown) -> Result<(), ProcessorError> {
        if consumer.rebalanced() {
            // Partitions moved: visitors we cached may now be updated by another instance, and
            // batches not yet committed belong to whoever owns their partitions now (they are
            // delivered again there and deduplicated by event id).
            self.profiles.clear();
            self.uncommitted.clear();
            tracing::info!("partition assignment changed; visitor cache and pending commits dropped");
        }
        if let Some(lag) = consumer.lag() {
            self.metrics.lag.set(lag);
        }
        if delivered.is_empty() {
            // An idle poll is when a store that persists on a timer catches up.
            return self.commit_durable(consumer).await;
        }
        let started = Instant::now();
        let source = consumer.source().to_owned();
        let outcome = self.process(delivered, &source, shutdown).await?;
        self.uncommitted.push(log_positions(delivered, &source), delivered);
        self.commit_durable(consumer).await?;
        self.metrics.events.inc_by(outcome.events_written as u64);
        self.metrics.duplicates.inc_by(outcome.duplicates as u64);
        self.metrics.dead_letters.inc_by(outcome.dead_letters as u64);
        self.metrics.poison.inc_by(outcome.poison as u64);
        self.metrics.erased.inc_by(outcome.erased as u64);
        self.metrics.batch_seconds.observe(started.elapsed().as_secs_f64());
        if let Some(lag) = consumer.lag() {
            self.metrics.lag.set(lag);
        }
        tracing::debug!(records = delivered.len(), written = outcome.events_written, duplicates = outcome.duplicates, "batch stored");
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The validated event and its receipt (the receipt's wire event is left empty: enrichment
/// reads only the receive time, address and user agent from it).
fn decode_event(payload: &[u8], limits: &Limits) -> Result<(crm_schemas::Event, CollectedEvent), String> {
    let mut collected: CollectedEvent = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let event = std::mem::take(&mut collected.event).validate(limits).map_err(|e| e.to_string())?;
    if event.visitor_id.is_none() {
        return Err("event has no visitor id".into());
    }
    Ok((event, collected))
}

/// A dead letter for an undecodable log record, attributed to its site when one is readable.
fn poison_letter(payload: &[u8], reason: &str) -> Option<DeadLetter> {
    #[derive(serde::Deserialize)]
    struct Partial {
        event: PartialEvent,
        received_at_ms: Option<i64>,
    }
    #[derive(serde::Deserialize)]
    struct PartialEvent {
        site_id: String,
    }
    let partial = serde_json::from_slice::<Partial>(payload).ok()?;
    let text = String::from_utf8_lossy(&payload[..payload.len().min(4096)]).into_owned();
    // Id and time derive from the record itself, so a replay writes the same dead letter again
    // (an upsert) instead of a second one.
    Some(DeadLetter {
        id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, payload),
        site_id: partial.event.site_id,
        received_at_ms: partial.received_at_ms.unwrap_or(0),
        code: "undecodable_record".into(),
        message: reason.to_owned(),
        payload: text,
    })
}
