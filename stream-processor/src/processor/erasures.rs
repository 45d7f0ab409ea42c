//! Erasure tombstones in the processor: events of an erased data subject received up to the
//! erasure are dropped before they touch a profile, so a log replay (a restart before the log
//! commit, a reprocessing from offset 0) never stores them again.
//!
//! The tombstones of a site are loaded once and kept until the store's erasure revision
//! ([`ERASURE_REVISION_KEY`]) changes; the revision is read once per batch. A change also drops
//! the visitor cache (a cached profile of an erased visitor must not be written back). An erase
//! that lands while a batch is in flight is run again for that batch's visitors once the batch is
//! stored: the batch may have written rows the erase had already looked for.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crm_schemas::{lead_id_for, normalize_email, DeadLetter, EventBody, Erasure, StoredEvent};
use crm_store::{StoreError, ERASURE_REVISION_KEY};

use super::Processor;

#[derive(Default)]
pub(super) struct Tombstones {
    /// The revision the cached sites were loaded at (`None` before the first read).
    revision: Option<Option<Vec<u8>>>,
    sites: HashMap<String, Arc<Vec<Erasure>>>,
}

/// The lead an identify or form submit names, if it carries an email.
fn lead_of(event: &StoredEvent) -> Option<String> {
    let traits = match &event.body {
        EventBody::Identify { traits } | EventBody::FormSubmit { traits, .. } => traits,
        _ => return None,
    };
    let email = normalize_email(traits.get("email")?.as_str()?)?;
    Some(lead_id_for(&event.site_id, &email))
}

impl Processor {
    /// Reads the erasure revision; on a change drops the cached tombstones and visitors.
    /// Returns whether it changed since the last read.
    pub(super) async fn refresh_tombstones(&mut self) -> Result<bool, StoreError> {
        let revision = self.store.meta(ERASURE_REVISION_KEY).await?;
        let changed = self.tombstones.revision.as_ref() != Some(&revision);
        if changed {
            if self.tombstones.revision.is_some() {
                tracing::info!("erasures changed; tombstones and visitor cache reloaded");
                self.profiles.clear();
            }
            self.tombstones.sites.clear();
            self.tombstones.revision = Some(revision);
        }
        Ok(changed)
    }

    async fn site_tombstones(&mut self, site_id: &str) -> Result<Arc<Vec<Erasure>>, StoreError> {
        if let Some(found) = self.tombstones.sites.get(site_id) {
            return Ok(found.clone());
        }
        let loaded = Arc::new(self.store.erasures(site_id).await?);
        self.tombstones.sites.insert(site_id.to_owned(), loaded.clone());
        Ok(loaded)
    }

    /// Whether the enriched event belongs to an erased subject (and was received before the erasure).
    pub(super) async fn is_erased(&mut self, event: &StoredEvent) -> Result<bool, StoreError> {
        let tombstones = self.site_tombstones(&event.site_id).await?;
        if tombstones.is_empty() {
            return Ok(false);
        }
        let lead = lead_of(event);
        Ok(tombstones.iter().any(|e| e.covers(&event.visitor_id, lead.as_deref(), event.received_at_ms)))
    }

    /// Drops the dead letters that quote an erased visitor id and arrived before its erasure.
    pub(super) async fn drop_erased_letters(&mut self, letters: &mut Vec<DeadLetter>) -> Result<usize, StoreError> {
        let mut keep = Vec::with_capacity(letters.len());
        let before = letters.len();
        for letter in letters.drain(..) {
            let tombstones = self.site_tombstones(&letter.site_id).await?;
            let erased = tombstones
                .iter()
                .any(|e| letter.received_at_ms <= e.at_ms && e.visitor_ids.iter().any(|v| !v.is_empty() && letter.payload.contains(v.as_str())));
            if !erased {
                keep.push(letter);
            }
        }
        *letters = keep;
        Ok(before - letters.len())
    }

    /// After a batch is stored: if an erase recorded at or after `started_ms` (the batch's start)
    /// landed meanwhile, runs it again over what this batch may have written (visitors in
    /// `touched`, leads in `leads`).
    pub(super) async fn erase_again_if_needed(&mut self, started_ms: i64, touched: &HashSet<(String, String)>, leads: &HashSet<(String, String)>) -> Result<(), StoreError> {
        if !self.refresh_tombstones().await? {
            return Ok(());
        }
        let sites: HashSet<&String> = touched.iter().map(|(s, _)| s).chain(leads.iter().map(|(s, _)| s)).collect();
        for site in sites {
            for erasure in self.store.erasures(site).await?.into_iter().filter(|e| e.at_ms >= started_ms) {
                let hits = erasure.visitor_ids.iter().any(|v| touched.contains(&(site.clone(), v.clone())))
                    || erasure.lead_ids.iter().any(|l| leads.contains(&(site.clone(), l.clone())));
                if hits {
                    let counts = self.store.erase_subject(&erasure, &erasure.visitor_ids).await?;
                    tracing::info!(site_id = %site, erasure_id = %erasure.erasure_id, records = counts.values().sum::<u64>(), "erase re-run after a batch that raced it");
                }
            }
        }
        Ok(())
    }
}
