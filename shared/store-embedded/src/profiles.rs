//! Visitor profiles under a memory budget: every profile's ranks and a small summary stay in
//! memory (the three ranked lists, humans and bots apart, and what the organisation grouping
//! needs), the full profile only while it is hot.
//!
//! Durability comes from profile runs ([`run`]): each commit point writes the profiles changed
//! since the previous one to `profiles/run-<id>.parquet` in the same manifest edit as the event
//! parts, so an event is never durable without the profile state that includes it (the
//! processor drops stored event ids before it applies them). The row a profile's latest durable
//! state sits in is its *home*.
//!
//! Memory: a hot profile is kept as its run row's JSON ([`run::Row`]), decoded when read. A
//! profile is evicted by dropping its hot copy, which writes nothing because its
//! home holds the same state. Only clean profiles (no change since their home was written) are
//! evicted, least recently used first, after each commit point while the hot bytes exceed the
//! budget. Dirty profiles are never evicted, so between commit points memory may exceed the
//! budget by what one commit interval changes. A cold profile is read back from its home row
//! (one page of the run) without becoming hot again: the processor keeps its own cache of the
//! profiles it is updating, and an update makes the profile hot anyway.

pub mod run;
mod slots;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crm_schemas::VisitorProfile;
use crm_store::{group_orgs, rank_value, BotFilter, OrgMember, OrgVisitors, StoreError, VisitorQuery, VisitorSort};

pub use run::{Row, Run};

use crate::Result;
use slots::{IdArena, Slots};

const SORTS: [VisitorSort; 3] = [VisitorSort::Intent, VisitorSort::Engagement, VisitorSort::LastSeen];

/// Default bytes of hot profiles kept in memory (as JSON, 0.5–1 KB each): the whole 200 K-visitor
/// working set of `bench/profile-up.sh` takes ~100 MB of it (a budget that held a third of the
/// set cost 40 % of the throughput in cold reads, bench/ANALYSIS.md).
pub const DEFAULT_BUDGET_BYTES: usize = 128 * 1024 * 1024;

/// Bytes a hot profile costs besides its JSON (the `Arc` header and allocator rounding).
const HOT_OVERHEAD: usize = 48;

/// Where a profile's latest durable state lives.
#[derive(Clone)]
pub struct Home {
    pub run: Arc<Run>,
    pub row: u32,
}

/// What a profile is known by while it is cold (see [`run::Summary`]). 88 bytes and the id in
/// the arena: a million profiles cost ~160 MB with the index and ranked lists, hot ones aside.
struct Slot {
    /// The visitor id's handle in [`SiteProfiles::ids`].
    visitor: u64,
    /// The profile's JSON while it is hot.
    hot: Option<Arc<[u8]>>,
    home: Option<Home>,
    ranks: [u64; 3],
    last_seen_ms: i64,
    /// The organisation the profile counts under in the grouping of unidentified visitors:
    /// index + 1 into `Profiles::org_names`, 0 for none.
    org: u32,
    /// Heap bytes of `hot`.
    bytes: u32,
    /// Clock tick of the last use (eviction order).
    used: AtomicU32,
    bot: bool,
    intent: u8,
    /// Changed since its home was written (in `Profiles::dirty` too); never evicted.
    dirty: bool,
}

/// One site's profiles: numbered slots with an index by visitor id (a map of whole slots sized
/// to a power of two held twice the memory at a million profiles).
struct SiteProfiles {
    name: Arc<str>,
    /// Slot numbers, hashed by their slot's visitor id: 5 bytes a bucket, where a map keyed by
    /// the id's `Arc<str>` took 25.
    index: hashbrown::HashTable<u32>,
    /// foldhash, seeded per table: visitor ids come from clients, so the seed keeps them from
    /// choosing colliding ids; SipHash here cost ~2.5 % of `crm up`'s core (bench/ANALYSIS.md).
    hasher: hashbrown::DefaultHashBuilder,
    slots: Slots<Slot>,
    ids: IdArena,
    /// [human, bot][sort] → (rank value, slot number), ascending = best first; within one rank
    /// value (the same score and millisecond) lists order by visitor id.
    ranks: [[BTreeSet<(u64, u32)>; 3]; 2],
    /// [`visitor_key`](crate::query::visitor_key) of every bot profile: a rollup holding one of
    /// them counted a visitor that is a bot now (see [`Profiles::bot_keys`]). Shared with
    /// readers, copied on write.
    bot_keys: Arc<hashbrown::HashSet<u128>>,
    /// Bumped whenever `bot_keys` changes.
    bot_generation: u64,
}

impl SiteProfiles {
    fn position(&self, visitor_id: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(visitor_id);
        self.index.find(hash, |&i| self.visitor(&self.slots[i as usize]) == visitor_id).copied()
    }

    fn visitor(&self, slot: &Slot) -> &str {
        self.ids.get(slot.visitor)
    }

    fn slot(&self, visitor_id: &str) -> Option<&Slot> {
        self.position(visitor_id).map(|i| &self.slots[i as usize])
    }

    fn slot_mut(&mut self, visitor_id: &str) -> Option<&mut Slot> {
        let i = self.position(visitor_id)?;
        Some(&mut self.slots[i as usize])
    }

    fn push(&mut self, slot: Slot) {
        let number = self.slots.len() as u32;
        let hash = self.hasher.hash_one(self.ids.get(slot.visitor));
        self.slots.push(slot);
        let (slots, ids, hasher) = (&self.slots, &self.ids, &self.hasher);
        self.index.insert_unique(hash, number, |&i| hasher.hash_one(ids.get(slots[i as usize].visitor)));
    }
}

impl Slot {
    /// An erased profile's slot ([`Profiles::remove`]).
    fn is_vacant(&self) -> bool {
        self.hot.is_none() && self.home.is_none()
    }

    /// The profile's state, hot or where to read it (a use, for eviction).
    fn found(&self, now: u32) -> Option<Found> {
        self.used.store(now, Ordering::Relaxed);
        match (&self.hot, &self.home) {
            (Some(hot), _) => Some(Found::Hot(hot.clone())),
            (None, Some(home)) => Some(Found::Cold(home.clone())),
            (None, None) => None,
        }
    }
}

/// A profile found in memory (its JSON), or where to read it.
pub enum Found {
    Hot(Arc<[u8]>),
    Cold(Home),
}

impl Found {
    /// The profile, decoded, or read from its run if it is cold.
    pub fn load(self) -> Result<VisitorProfile> {
        match self {
            Found::Hot(json) => run::decode(&json, std::path::Path::new("(hot profile in memory)")),
            Found::Cold(home) => home.run.read_row(home.row),
        }
    }
}

pub struct Profiles {
    sites: HashMap<String, SiteProfiles>,
    /// (site, visitor) changed since the last commit point.
    /// (site, slot number) of each slot whose `dirty` flag is set, once.
    dirty: Vec<(Arc<str>, u32)>,
    /// Live runs by id (the manifest's), oldest first.
    runs: std::collections::BTreeMap<u64, Arc<Run>>,
    orgs: HashMap<Arc<str>, u32>,
    org_names: Vec<Arc<str>>,
    hot_bytes: usize,
    budget: usize,
    clock: AtomicU32,
    /// Runs are being loaded at open: the ranked lists are built once at the end
    /// ([`Profiles::finish_loading`]).
    loading: bool,
}

impl Profiles {
    pub fn new(budget_bytes: usize) -> Profiles {
        Profiles { sites: HashMap::new(), dirty: Vec::new(), runs: Default::default(), orgs: HashMap::new(), org_names: Vec::new(), hot_bytes: 0, budget: budget_bytes, clock: AtomicU32::new(0), loading: false }
    }

    /// Loads runs without maintaining the ranked lists row by row (until
    /// [`Profiles::finish_loading`]).
    pub fn start_loading(&mut self) {
        self.loading = true;
    }

    /// Builds every ranked list from the slots in one sorted pass: bulk-built B-trees have full
    /// nodes, about a third less memory than the same entries inserted one by one (~25 MB
    /// at a million profiles).
    pub fn finish_loading(&mut self) {
        self.loading = false;
        for site in self.sites.values_mut() {
            let mut lists: [[Vec<(u64, u32)>; 3]; 2] = Default::default();
            for (number, slot) in site.slots.iter().enumerate() {
                for (i, value) in slot.ranks.iter().enumerate() {
                    lists[usize::from(slot.bot)][i].push((*value, number as u32));
                }
            }
            site.ranks = lists.map(|kind| kind.map(BTreeSet::from_iter));
        }
    }

    fn intern_org(&mut self, org: Option<&str>) -> u32 {
        let Some(org) = org else { return 0 };
        if let Some(&known) = self.orgs.get(org) {
            return known;
        }
        let name: Arc<str> = Arc::from(org);
        self.org_names.push(name.clone());
        let id = self.org_names.len() as u32;
        self.orgs.insert(name, id);
        id
    }

    /// Puts (or moves) a profile's slot, keeping its home unless `home` is given; returns the
    /// slot's number.
    fn place(&mut self, site_id: &str, visitor_id: &str, summary: run::Summary, hot: Option<Arc<[u8]>>, home: Option<Home>) -> u32 {
        let org = self.intern_org(summary.org);
        let bytes = hot.as_ref().map_or(0, |json| json.len() + HOT_OVERHEAD) as u32;
        let now = self.clock.load(Ordering::Relaxed);
        if !self.sites.contains_key(site_id) {
            let site = SiteProfiles {
                name: Arc::from(site_id),
                index: Default::default(),
                hasher: Default::default(),
                slots: Slots::default(),
                ids: IdArena::default(),
                ranks: Default::default(),
                bot_keys: Default::default(),
                bot_generation: 0,
            };
            self.sites.insert(site_id.to_owned(), site);
        }
        let site = self.sites.get_mut(site_id).expect("inserted above");
        let existing = site.position(visitor_id);
        let number = existing.unwrap_or(site.slots.len() as u32);
        let was_bot = existing.is_some_and(|i| site.slots[i as usize].bot);
        if was_bot != summary.bot {
            let key = crate::query::visitor_key(visitor_id);
            let keys = Arc::make_mut(&mut site.bot_keys);
            if summary.bot {
                keys.insert(key);
            } else {
                keys.remove(&key);
            }
            site.bot_generation += 1;
        }
        let (key, old_home, dirty) = match existing.map(|i| &site.slots[i as usize]) {
            Some(old) => {
                let key = old.visitor;
                if !self.loading && (old.ranks != summary.ranks || old.bot != summary.bot) {
                    for (i, value) in old.ranks.iter().enumerate() {
                        site.ranks[usize::from(old.bot)][i].remove(&(*value, number));
                    }
                }
                self.hot_bytes -= old.bytes as usize;
                (key, old.home.clone(), old.dirty)
            }
            None => (site.ids.push(visitor_id), None, false),
        };
        if !self.loading {
            for (i, value) in summary.ranks.iter().enumerate() {
                site.ranks[usize::from(summary.bot)][i].insert((*value, number));
            }
        }
        self.hot_bytes += bytes as usize;
        let slot = Slot {
            visitor: key,
            hot,
            home: home.or(old_home),
            ranks: summary.ranks,
            bot: summary.bot,
            intent: summary.intent,
            last_seen_ms: summary.last_seen_ms,
            org,
            bytes,
            used: AtomicU32::new(now),
            dirty,
        };
        match existing {
            Some(i) => site.slots[i as usize] = slot,
            None => site.push(slot),
        }
        number
    }

    /// Stores the profile's latest state (hot) and moves it in the ranked lists.
    pub fn apply(&mut self, profile: &VisitorProfile, mark_dirty: bool) {
        self.apply_row(&Row::of(profile), mark_dirty);
    }

    /// [`Profiles::apply`] for a profile already encoded (outside the lock).
    pub fn apply_row(&mut self, row: &Row, mark_dirty: bool) {
        let number = self.place(&row.site_id, &row.visitor_id, row.summary(), Some(row.json.clone()), None);
        if mark_dirty {
            self.mark_slot_dirty(&row.site_id, number);
        }
    }

    fn mark_dirty(&mut self, site_id: &str, visitor_id: &str) {
        if let Some(number) = self.sites.get(site_id).and_then(|site| site.position(visitor_id)) {
            self.mark_slot_dirty(site_id, number);
        }
    }

    /// Marks slot `number` of the site dirty (the caller knows the slot: no index lookup).
    fn mark_slot_dirty(&mut self, site_id: &str, number: u32) {
        let Some(site) = self.sites.get_mut(site_id) else { return };
        let slot = &mut site.slots[number as usize];
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push((site.name.clone(), number));
        }
    }

    /// Forgets the visitor's profile (a data-subject erase): out of the index, the ranked lists
    /// and the bot keys, its hot copy dropped. The slot stays, vacant (neither hot nor at home),
    /// since slot numbers never change; its run rows are no home any more, so the next fold
    /// drops them. Returns whether the profile was known.
    pub fn remove(&mut self, site_id: &str, visitor_id: &str) -> bool {
        let Some(site) = self.sites.get_mut(site_id) else { return false };
        let hash = site.hasher.hash_one(visitor_id);
        let (slots, ids) = (&site.slots, &site.ids);
        let Ok(entry) = site.index.find_entry(hash, |&i| ids.get(slots[i as usize].visitor) == visitor_id) else { return false };
        let (number, _) = entry.remove();
        let slot = &mut site.slots[number as usize];
        for (i, value) in slot.ranks.iter().enumerate() {
            site.ranks[usize::from(slot.bot)][i].remove(&(*value, number));
        }
        if slot.bot {
            Arc::make_mut(&mut site.bot_keys).remove(&crate::query::visitor_key(visitor_id));
            site.bot_generation += 1;
        }
        self.hot_bytes -= slot.bytes as usize;
        (slot.hot, slot.home, slot.bytes, slot.org, slot.dirty) = (None, None, 0, 0, false);
        true
    }

    /// A durable row read at open: the profile is known by its summary and home, cold.
    pub fn load_row(&mut self, site_id: &str, visitor_id: &str, summary: run::Summary, home: Home) {
        self.place(site_id, visitor_id, summary, None, Some(home));
    }

    /// A profile's state, hot or where to read it.
    pub fn locate(&self, site_id: &str, visitor_id: &str) -> Option<Found> {
        self.sites.get(site_id)?.slot(visitor_id)?.found(self.clock.load(Ordering::Relaxed))
    }

    /// The sites that know `visitor_id`, in site order.
    pub fn find(&self, visitor_id: &str) -> Vec<Found> {
        let mut sites: Vec<&String> = self.sites.keys().collect();
        sites.sort();
        sites.into_iter().filter_map(|site| self.locate(site, visitor_id)).collect()
    }

    /// A ranked page after the cursor `"{rank value}:{visitor}"` (the format every backend
    /// uses), as profiles to load, and the next cursor.
    pub fn list(&self, query: &VisitorQuery) -> Result<(Vec<Found>, Option<String>), StoreError> {
        let after = match &query.cursor {
            Some(cursor) => {
                let (value, visitor) = cursor.split_once(':').ok_or(StoreError::InvalidCursor)?;
                Some((value.parse::<u64>().map_err(|_| StoreError::InvalidCursor)?, visitor))
            }
            None => None,
        };
        let Some(site) = self.sites.get(&query.site_id) else { return Ok((Vec::new(), None)) };
        let sort = SORTS.iter().position(|s| *s == query.sort).expect("every sort is listed");
        let set = &site.ranks[usize::from(query.bots == BotFilter::Only)][sort];
        let now = self.clock.load(Ordering::Relaxed);
        let mut entries = set.range((after.as_ref().map_or(0, |(value, _)| *value), 0)..).peekable();
        let mut items = Vec::with_capacity(query.limit.min(1_000));
        let (mut last, mut more) = (None, false);
        // Entries come by rank value; the few that share one are put in visitor order.
        'groups: while let Some(&&(value, _)) = entries.peek() {
            let mut group: Vec<(&str, &Slot)> = Vec::new();
            while let Some(&(_, number)) = entries.next_if(|(v, _)| *v == value) {
                let slot = &site.slots[number as usize];
                group.push((site.visitor(slot), slot));
            }
            group.sort_by(|a, b| a.0.cmp(b.0));
            for (visitor, slot) in group {
                if after.as_ref().is_some_and(|(after_value, after_visitor)| value == *after_value && visitor <= *after_visitor) {
                    continue;
                }
                if items.len() == query.limit {
                    more = true;
                    break 'groups;
                }
                if let Some(found) = slot.found(now) {
                    items.push(found);
                    last = Some(format!("{value}:{visitor}"));
                }
            }
        }
        Ok((items, if more { last } else { None }))
    }

    /// The site's bot visitors last seen at or after `since_ms`, ascending
    /// ([`crm_store::ProfileStore::bot_visitors`]): the bot list of the last-seen sort, newest
    /// first, up to the first one seen before `since_ms`.
    pub fn bots_since(&self, site_id: &str, since_ms: i64) -> Vec<String> {
        let Some(site) = self.sites.get(site_id) else { return Vec::new() };
        let sort = SORTS.iter().position(|s| *s == VisitorSort::LastSeen).expect("every sort is listed");
        let mut out: Vec<String> = site.ranks[1][sort]
            .iter()
            .map(|&(_, number)| &site.slots[number as usize])
            .take_while(|slot| slot.last_seen_ms >= since_ms)
            .map(|slot| site.visitor(slot).to_owned())
            .collect();
        out.sort_unstable();
        out
    }

    /// Every profile of the site as the SQL `visitors` view shows it: (id, bot, intent score,
    /// last seen), from the summaries in memory (no profile is read).
    pub fn summaries(&self, site_id: &str) -> Vec<crate::sql::VisitorSummary> {
        let Some(site) = self.sites.get(site_id) else { return Vec::new() };
        site.slots.iter().filter(|slot| !slot.is_vacant()).map(|slot| (site.visitor(slot).to_owned(), slot.bot, slot.intent, slot.last_seen_ms)).collect()
    }

    /// The keys of all the site's bot visitors and their generation, which changes whenever a
    /// profile becomes a bot (or stops being one): a reader that checked a rollup against one
    /// generation need not check it again until the generation moves.
    pub fn bot_keys(&self, site_id: &str) -> (u64, Arc<hashbrown::HashSet<u128>>) {
        self.sites.get(site_id).map_or((0, Arc::default()), |site| (site.bot_generation, site.bot_keys.clone()))
    }

    /// Unidentified visitors grouped by organisation, from the summaries alone.
    pub fn orgs(&self, site_id: &str, limit: usize) -> Vec<OrgVisitors> {
        match self.sites.get(site_id) {
            Some(site) => group_orgs(
                site.slots.iter().filter(|slot| slot.org > 0).map(|slot| OrgMember {
                    org: &*self.org_names[slot.org as usize - 1],
                    visitor_id: site.visitor(slot),
                    last_seen_ms: slot.last_seen_ms,
                    intent_score: slot.intent,
                }),
                limit,
            ),
            None => Vec::new(),
        }
    }

    /// The profiles changed since the last call, as the rows a commit point's run writes
    /// (sorted by site and visitor; dirty profiles are always hot).
    pub fn take_dirty(&mut self) -> Vec<Row> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut out: Vec<Row> = Vec::with_capacity(dirty.len());
        for (site, number) in &dirty {
            let Some(site) = self.sites.get_mut(&**site) else { continue };
            let slot = &mut site.slots[*number as usize];
            slot.dirty = false;
            if let Some(json) = &slot.hot {
                out.push(Row {
                    site_id: site.name.clone(),
                    visitor_id: Arc::from(site.ids.get(slot.visitor)),
                    ranks: slot.ranks,
                    bot: slot.bot,
                    intent: slot.intent,
                    last_seen_ms: slot.last_seen_ms,
                    org: slot.org.checked_sub(1).map(|i| self.org_names[i as usize].clone()),
                    json: json.clone(),
                });
            }
        }
        out.sort_by(|a, b| (&a.site_id, &a.visitor_id).cmp(&(&b.site_id, &b.visitor_id)));
        out
    }

    /// Marks profiles dirty again (their commit point failed).
    pub fn redirty(&mut self, rows: &[Row]) {
        for row in rows {
            self.mark_dirty(&row.site_id, &row.visitor_id);
        }
    }

    /// After a commit point's edit: `written[i]` is row `i` of `run`, now those profiles' home.
    pub fn settle(&mut self, run: Arc<Run>, written: &[Row]) {
        self.runs.insert(run.id(), run.clone());
        for (row, profile) in written.iter().enumerate() {
            if let Some(slot) = self.sites.get_mut(&*profile.site_id).and_then(|s| s.slot_mut(&profile.visitor_id)) {
                slot.home = Some(Home { run: run.clone(), row: row as u32 });
            }
        }
    }

    /// A run opened at start (its rows are loaded with [`Profiles::load_row`]).
    pub fn add_run(&mut self, run: Arc<Run>) {
        self.runs.insert(run.id(), run);
    }

    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    pub fn runs(&self) -> Vec<Arc<Run>> {
        self.runs.values().cloned().collect()
    }

    /// Adds (site, visitor, new row) rows a fold has copied to `moves`, as slot numbers (8 bytes
    /// a row, so a fold of a million profiles holds ~8 MB of them).
    pub fn note_moves(&self, copied: &[(String, String, u32)], moves: &mut HashMap<String, Vec<(u32, u32)>>) {
        for (site, visitor, row) in copied {
            if let Some(slot) = self.sites.get(site).and_then(|s| s.position(visitor)) {
                moves.entry(site.clone()).or_default().push((slot, *row));
            }
        }
    }

    /// Points the moved slots' homes at the merged run, once it is completely written: only
    /// slots still at home in one of the `folded` runs (a commit point during the fold may have
    /// given a profile a newer row elsewhere, which stays its home).
    pub fn rehome(&mut self, merged: &Arc<Run>, moves: &HashMap<String, Vec<(u32, u32)>>, folded: &[Arc<Run>]) {
        let folded: HashSet<u64> = folded.iter().map(|r| r.id()).collect();
        for (site, moved) in moves {
            let Some(site) = self.sites.get_mut(site) else { continue };
            for &(slot, row) in moved {
                let home = &mut site.slots[slot as usize].home;
                if home.as_ref().is_some_and(|h| folded.contains(&h.run.id())) {
                    *home = Some(Home { run: merged.clone(), row });
                }
            }
        }
    }

    /// After the merge's edit: the folded runs leave (their files go with the last reader).
    pub fn retire_runs(&mut self, merged: Arc<Run>, folded: &[Arc<Run>]) {
        for run in folded {
            self.runs.remove(&run.id());
            run.mark_removed();
        }
        self.runs.insert(merged.id(), merged);
    }

    /// For each live run, which rows are still some profile's home.
    pub fn live_rows(&self) -> HashMap<u64, Vec<bool>> {
        let mut live: HashMap<u64, Vec<bool>> = self.runs.values().map(|run| (run.id(), vec![false; run.rows() as usize])).collect();
        for site in self.sites.values() {
            for slot in site.slots.iter() {
                if let Some(home) = &slot.home {
                    if let Some(rows) = live.get_mut(&home.run.id()) {
                        if let Some(flag) = rows.get_mut(home.row as usize) {
                            *flag = true;
                        }
                    }
                }
            }
        }
        live
    }

    /// Advances the clock (once per commit point) and evicts clean profiles, least recently
    /// used first, until the hot ones fit 90 % of the budget. Returns how many were evicted.
    pub fn evict(&mut self) -> usize {
        self.clock.fetch_add(1, Ordering::Relaxed);
        if self.hot_bytes <= self.budget {
            return 0;
        }
        let target = self.budget / 10 * 9;
        // (last use, site, slot number) of every clean hot profile.
        let mut candidates: Vec<(u32, Arc<str>, u32)> = Vec::new();
        for site in self.sites.values() {
            for (number, slot) in site.slots.iter().enumerate() {
                if slot.hot.is_some() && slot.home.is_some() && !slot.dirty {
                    candidates.push((slot.used.load(Ordering::Relaxed), site.name.clone(), number as u32));
                }
            }
        }
        candidates.sort_unstable_by_key(|(used, _, _)| *used);
        let mut evicted = 0;
        for (_, site, number) in candidates {
            if self.hot_bytes <= target {
                break;
            }
            if let Some(site) = self.sites.get_mut(&*site) {
                let slot = &mut site.slots[number as usize];
                slot.hot = None;
                self.hot_bytes -= slot.bytes as usize;
                slot.bytes = 0;
                evicted += 1;
            }
        }
        evicted
    }

    /// Heap bytes of the hot profiles (their JSON).
    pub fn hot_bytes(&self) -> usize {
        self.hot_bytes
    }

    pub fn hot_count(&self) -> usize {
        self.sites.values().flat_map(|s| s.slots.iter()).filter(|slot| slot.hot.is_some()).count()
    }

    pub fn len(&self) -> usize {
        self.sites.values().map(|s| s.slots.iter().filter(|slot| !slot.is_vacant()).count()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The rank values of a profile in [`SORTS`] order.
pub(crate) fn ranks_of(profile: &VisitorProfile) -> [u64; 3] {
    SORTS.map(|sort| rank_value(profile, sort))
}
