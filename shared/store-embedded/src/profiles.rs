//! Visitor profiles in memory: every profile of every site, the three ranked lists (intent,
//! engagement, last seen; humans and bots apart) as ordered sets, and the set of profiles
//! changed since the last commit point.
//!
//! Durability comes from profile runs: each commit point writes the profiles changed since the
//! previous one to `profiles/run-<id>.parquet` in the same manifest edit as the event parts, so
//! an event is never durable without the profile state that includes it (the processor drops
//! stored event ids before it applies them). Opening reads every live run, oldest first, newest
//! state winning. When runs pile up, one full run replaces them all.
//!
//! Memory: every profile stays in memory (DESIGN-v2.md §3.4 plans eviction of clean profiles to
//! their run rows under a budget; not built yet).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use crm_schemas::VisitorProfile;
use crm_store::{group_orgs, rank_value, BotFilter, OrgVisitors, Page, StoreError, VisitorQuery, VisitorSort};
use datafusion::arrow::array::{ArrayRef, AsArray, BinaryArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::{ColumnarError, Result};

const SORTS: [VisitorSort; 3] = [VisitorSort::Intent, VisitorSort::Engagement, VisitorSort::LastSeen];

struct Slot {
    profile: Arc<VisitorProfile>,
    ranks: [u64; 3],
    bot: bool,
}

#[derive(Default)]
struct SiteProfiles {
    slots: HashMap<Arc<str>, Slot>,
    /// [human, bot][sort] → (rank value, visitor), ascending = best first.
    ranks: [[BTreeSet<(u64, Arc<str>)>; 3]; 2],
}

#[derive(Default)]
pub struct Profiles {
    sites: HashMap<String, SiteProfiles>,
    /// (site, visitor) changed since the last commit point.
    dirty: std::collections::HashSet<(String, String)>,
}

impl Profiles {
    /// Stores the profile's latest state and moves it in the ranked lists.
    pub fn apply(&mut self, profile: &VisitorProfile, mark_dirty: bool) {
        let site = self.sites.entry(profile.site_id.clone()).or_default();
        let ranks = SORTS.map(|sort| rank_value(profile, sort));
        let bot = profile.is_bot;
        let key: Arc<str> = match site.slots.get_key_value(profile.visitor_id.as_str()) {
            Some((key, old)) => {
                let key = key.clone();
                if old.ranks != ranks || old.bot != bot {
                    let side = usize::from(old.bot);
                    for (i, value) in old.ranks.iter().enumerate() {
                        site.ranks[side][i].remove(&(*value, key.clone()));
                    }
                }
                key
            }
            None => Arc::from(profile.visitor_id.as_str()),
        };
        let side = usize::from(bot);
        for (i, value) in ranks.iter().enumerate() {
            site.ranks[side][i].insert((*value, key.clone()));
        }
        site.slots.insert(key, Slot { profile: Arc::new(profile.clone()), ranks, bot });
        if mark_dirty {
            self.dirty.insert((profile.site_id.clone(), profile.visitor_id.clone()));
        }
    }

    pub fn get(&self, site_id: &str, visitor_id: &str) -> Option<VisitorProfile> {
        self.sites.get(site_id)?.slots.get(visitor_id).map(|slot| (*slot.profile).clone())
    }

    pub fn find(&self, visitor_id: &str) -> Vec<VisitorProfile> {
        let mut sites: Vec<&String> = self.sites.keys().collect();
        sites.sort();
        sites.into_iter().filter_map(|site| self.get(site, visitor_id)).collect()
    }

    /// A ranked page after the cursor `"{rank value}:{visitor}"` (the format every backend uses).
    pub fn list(&self, query: &VisitorQuery) -> Result<Page<VisitorProfile>, StoreError> {
        let after = match &query.cursor {
            Some(cursor) => {
                let (value, visitor) = cursor.split_once(':').ok_or(StoreError::InvalidCursor)?;
                Some((value.parse::<u64>().map_err(|_| StoreError::InvalidCursor)?, Arc::<str>::from(visitor)))
            }
            None => None,
        };
        let Some(site) = self.sites.get(&query.site_id) else { return Ok(Page { items: Vec::new(), next_cursor: None }) };
        let sort = SORTS.iter().position(|s| *s == query.sort).expect("every sort is listed");
        let set = &site.ranks[usize::from(query.bots == BotFilter::Only)][sort];
        let mut entries: Box<dyn Iterator<Item = &(u64, Arc<str>)>> = match &after {
            Some(after) => Box::new(set.range((std::ops::Bound::Excluded(after.clone()), std::ops::Bound::Unbounded))),
            None => Box::new(set.iter()),
        };
        let mut items = Vec::with_capacity(query.limit.min(1_000));
        let mut last = None;
        for (value, visitor) in entries.by_ref().take(query.limit) {
            if let Some(slot) = site.slots.get(visitor) {
                items.push((*slot.profile).clone());
                last = Some(format!("{value}:{visitor}"));
            }
        }
        let next_cursor = if entries.next().is_some() { last } else { None };
        Ok(Page { items, next_cursor })
    }

    pub fn orgs(&self, site_id: &str, limit: usize) -> Vec<OrgVisitors> {
        match self.sites.get(site_id) {
            Some(site) => group_orgs(site.slots.values().map(|slot| slot.profile.as_ref()), limit),
            None => Vec::new(),
        }
    }

    /// The profiles changed since the last call, to write in a commit point's run.
    pub fn take_dirty(&mut self) -> Vec<Arc<VisitorProfile>> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut out: Vec<Arc<VisitorProfile>> =
            dirty.iter().filter_map(|(site, visitor)| self.sites.get(site)?.slots.get(visitor.as_str()).map(|s| s.profile.clone())).collect();
        out.sort_by(|a, b| (&a.site_id, &a.visitor_id).cmp(&(&b.site_id, &b.visitor_id)));
        out
    }

    /// Marks profiles dirty again (their commit point failed).
    pub fn redirty(&mut self, profiles: &[Arc<VisitorProfile>]) {
        self.dirty.extend(profiles.iter().map(|p| (p.site_id.clone(), p.visitor_id.clone())));
    }

    /// Every profile, for a full run that replaces the older ones.
    pub fn all(&self) -> Vec<Arc<VisitorProfile>> {
        let mut out: Vec<Arc<VisitorProfile>> = self.sites.values().flat_map(|s| s.slots.values().map(|slot| slot.profile.clone())).collect();
        out.sort_by(|a, b| (&a.site_id, &a.visitor_id).cmp(&(&b.site_id, &b.visitor_id)));
        out
    }

    pub fn len(&self) -> usize {
        self.sites.values().map(|s| s.slots.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn run_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![Field::new("site_id", DataType::Utf8, false), Field::new("visitor_id", DataType::Utf8, false), Field::new("json", DataType::Binary, false)]))
}

/// Writes a run of profiles (sorted by site and visitor) and fsyncs it.
pub fn write_run(path: &Path, profiles: &[Arc<VisitorProfile>]) -> Result<u64> {
    let mut json = Vec::with_capacity(profiles.len());
    for profile in profiles {
        json.push(serde_json::to_vec(profile.as_ref()).map_err(|e| ColumnarError::corrupt(path, e))?);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(profiles.iter().map(|p| p.site_id.as_str()))),
        Arc::new(StringArray::from_iter_values(profiles.iter().map(|p| p.visitor_id.as_str()))),
        Arc::new(BinaryArray::from_iter_values(json.iter())),
    ];
    let batch = RecordBatch::try_new(run_schema(), columns).map_err(|e| ColumnarError::corrupt(path, e))?;
    crate::part::write_batch(path, &batch)
}

/// Applies a run's profiles to `into` (not dirty: they are durable already).
pub fn read_run(path: &Path, into: &mut Profiles) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| ColumnarError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| ColumnarError::corrupt(path, e))?.build().map_err(|e| ColumnarError::corrupt(path, e))?;
    for batch in reader {
        let batch = batch.map_err(|e| ColumnarError::corrupt(path, e))?;
        let json = batch.column(2).as_binary::<i32>();
        for row in 0..batch.num_rows() {
            let profile: VisitorProfile = serde_json::from_slice(json.value(row)).map_err(|e| ColumnarError::corrupt(path, e))?;
            into.apply(&profile, false);
        }
    }
    Ok(())
}
