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
//! Memory: a profile is evicted by dropping its hot copy, which writes nothing because its
//! home holds the same state. Only clean profiles (no change since their home was written) are
//! evicted, least recently used first, after each commit point while the hot bytes exceed the
//! budget. Dirty profiles are never evicted, so between commit points memory may exceed the
//! budget by what one commit interval changes. A cold profile is read back from its home row
//! (one page of the run) without becoming hot again: the processor keeps its own cache of the
//! profiles it is updating, and an update makes the profile hot anyway.

pub mod run;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crm_schemas::VisitorProfile;
use crm_store::{group_orgs, rank_value, BotFilter, OrgMember, OrgVisitors, StoreError, VisitorQuery, VisitorSort};

pub use run::Run;

use crate::Result;

const SORTS: [VisitorSort; 3] = [VisitorSort::Intent, VisitorSort::Engagement, VisitorSort::LastSeen];

/// Default bytes of hot profiles kept in memory: about 200 K typical profiles, the working set
/// that `bench/profile-up.sh` keeps busy without a cold read (a 64 MiB budget cost it 40 % of
/// its throughput in cold reads, bench/ANALYSIS.md).
pub const DEFAULT_BUDGET_BYTES: usize = 256 * 1024 * 1024;

/// Where a profile's latest durable state lives.
#[derive(Clone)]
pub struct Home {
    pub run: Arc<Run>,
    pub row: u32,
}

/// What a profile is known by while it is cold (see [`run::Summary`]). About 90 bytes: a
/// million profiles cost ~250 MB with the index and ranked lists, whole profiles aside.
struct Slot {
    visitor: Arc<str>,
    hot: Option<Arc<VisitorProfile>>,
    home: Option<Home>,
    ranks: [u64; 3],
    last_seen_ms: i64,
    /// The organisation the profile counts under in the grouping of unidentified visitors:
    /// index + 1 into `Profiles::org_names`, 0 for none.
    org: u32,
    /// Estimated heap bytes of `hot`.
    bytes: u32,
    /// Clock tick of the last use (eviction order).
    used: AtomicU32,
    bot: bool,
    intent: u8,
    /// Changed since its home was written (in `Profiles::dirty` too); never evicted.
    dirty: bool,
}

/// One site's profiles: slots in a vector (a slot's number never changes) with an index by
/// visitor id (a map of whole slots sized to a power of two held twice the memory at a million
/// profiles).
#[derive(Default)]
struct SiteProfiles {
    /// Slot numbers, hashed by their slot's visitor id: 5 bytes a bucket, where a map keyed by
    /// the id's `Arc<str>` took 25.
    index: hashbrown::HashTable<u32>,
    /// foldhash, seeded per table: visitor ids come from clients, so the seed keeps them from
    /// choosing colliding ids; SipHash here cost ~2.5 % of `crm up`'s core (bench/ANALYSIS.md).
    hasher: hashbrown::DefaultHashBuilder,
    slots: Vec<Slot>,
    /// [human, bot][sort] → (rank value, slot number), ascending = best first; within one rank
    /// value (the same score and millisecond) lists order by visitor id.
    ranks: [[BTreeSet<(u64, u32)>; 3]; 2],
}

impl SiteProfiles {
    fn position(&self, visitor_id: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(visitor_id);
        self.index.find(hash, |&i| &*self.slots[i as usize].visitor == visitor_id).copied()
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
        let hash = self.hasher.hash_one(&*slot.visitor);
        self.slots.push(slot);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hash, number, |&i| hasher.hash_one(&*slots[i as usize].visitor));
    }
}

impl Slot {
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

/// A profile found in memory, or where to read it.
pub enum Found {
    Hot(Arc<VisitorProfile>),
    Cold(Home),
}

impl Found {
    /// The profile, read from its run if it is cold.
    pub fn load(self) -> Result<VisitorProfile> {
        match self {
            Found::Hot(profile) => Ok((*profile).clone()),
            Found::Cold(home) => home.run.read_row(home.row),
        }
    }
}

pub struct Profiles {
    sites: HashMap<String, SiteProfiles>,
    /// (site, visitor) changed since the last commit point.
    dirty: HashSet<(String, String)>,
    /// Live runs by id (the manifest's), oldest first.
    runs: std::collections::BTreeMap<u64, Arc<Run>>,
    orgs: HashMap<String, u32>,
    org_names: Vec<String>,
    hot_bytes: usize,
    budget: usize,
    clock: AtomicU32,
}

impl Profiles {
    pub fn new(budget_bytes: usize) -> Profiles {
        Profiles { sites: HashMap::new(), dirty: HashSet::new(), runs: Default::default(), orgs: HashMap::new(), org_names: Vec::new(), hot_bytes: 0, budget: budget_bytes, clock: AtomicU32::new(0) }
    }

    fn intern_org(&mut self, org: Option<&str>) -> u32 {
        let Some(org) = org else { return 0 };
        if let Some(&known) = self.orgs.get(org) {
            return known;
        }
        self.org_names.push(org.to_owned());
        let id = self.org_names.len() as u32;
        self.orgs.insert(org.to_owned(), id);
        id
    }

    /// Puts (or moves) a profile's slot, keeping its home unless `home` is given.
    fn place(&mut self, site_id: &str, visitor_id: &str, summary: run::Summary, hot: Option<Arc<VisitorProfile>>, home: Option<Home>) {
        let org = self.intern_org(summary.org);
        let bytes = hot.as_deref().map_or(0, approx_bytes) as u32;
        let now = self.clock.load(Ordering::Relaxed);
        if !self.sites.contains_key(site_id) {
            self.sites.insert(site_id.to_owned(), SiteProfiles::default());
        }
        let site = self.sites.get_mut(site_id).expect("inserted above");
        let existing = site.position(visitor_id);
        let number = existing.unwrap_or(site.slots.len() as u32);
        let (key, old_home, dirty) = match existing.map(|i| &site.slots[i as usize]) {
            Some(old) => {
                let key = old.visitor.clone();
                if old.ranks != summary.ranks || old.bot != summary.bot {
                    for (i, value) in old.ranks.iter().enumerate() {
                        site.ranks[usize::from(old.bot)][i].remove(&(*value, number));
                    }
                }
                self.hot_bytes -= old.bytes as usize;
                (key, old.home.clone(), old.dirty)
            }
            None => (Arc::from(visitor_id), None, false),
        };
        for (i, value) in summary.ranks.iter().enumerate() {
            site.ranks[usize::from(summary.bot)][i].insert((*value, number));
        }
        self.hot_bytes += bytes as usize;
        let slot = Slot {
            visitor: key.clone(),
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
    }

    /// Stores the profile's latest state (hot) and moves it in the ranked lists.
    pub fn apply(&mut self, profile: &VisitorProfile, mark_dirty: bool) {
        self.place(&profile.site_id, &profile.visitor_id, run::Summary::of(profile), Some(Arc::new(profile.clone())), None);
        if mark_dirty {
            self.mark_dirty(&profile.site_id, &profile.visitor_id);
        }
    }

    fn mark_dirty(&mut self, site_id: &str, visitor_id: &str) {
        if let Some(slot) = self.sites.get_mut(site_id).and_then(|s| s.slot_mut(visitor_id)) {
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.insert((site_id.to_owned(), visitor_id.to_owned()));
            }
        }
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
                Some((value.parse::<u64>().map_err(|_| StoreError::InvalidCursor)?, Arc::<str>::from(visitor)))
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
            let mut group: Vec<&Slot> = Vec::new();
            while let Some(&(_, number)) = entries.next_if(|(v, _)| *v == value) {
                group.push(&site.slots[number as usize]);
            }
            group.sort_by(|a, b| a.visitor.cmp(&b.visitor));
            for slot in group {
                if after.as_ref().is_some_and(|(after_value, after_visitor)| value == *after_value && slot.visitor <= *after_visitor) {
                    continue;
                }
                if items.len() == query.limit {
                    more = true;
                    break 'groups;
                }
                if let Some(found) = slot.found(now) {
                    items.push(found);
                    last = Some(format!("{value}:{}", slot.visitor));
                }
            }
        }
        Ok((items, if more { last } else { None }))
    }

    /// Unidentified visitors grouped by organisation, from the summaries alone.
    pub fn orgs(&self, site_id: &str, limit: usize) -> Vec<OrgVisitors> {
        match self.sites.get(site_id) {
            Some(site) => group_orgs(
                site.slots.iter().filter(|slot| slot.org > 0).map(|slot| OrgMember {
                    org: &self.org_names[slot.org as usize - 1],
                    visitor_id: &slot.visitor,
                    last_seen_ms: slot.last_seen_ms,
                    intent_score: slot.intent,
                }),
                limit,
            ),
            None => Vec::new(),
        }
    }

    /// The profiles changed since the last call, to write in a commit point's run (sorted by
    /// site and visitor; dirty profiles are always hot).
    pub fn take_dirty(&mut self) -> Vec<Arc<VisitorProfile>> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut out: Vec<Arc<VisitorProfile>> = Vec::with_capacity(dirty.len());
        for (site, visitor) in &dirty {
            if let Some(slot) = self.sites.get_mut(site).and_then(|s| s.slot_mut(visitor)) {
                slot.dirty = false;
                out.extend(slot.hot.clone());
            }
        }
        out.sort_by(|a, b| (&a.site_id, &a.visitor_id).cmp(&(&b.site_id, &b.visitor_id)));
        out
    }

    /// Marks profiles dirty again (their commit point failed).
    pub fn redirty(&mut self, profiles: &[Arc<VisitorProfile>]) {
        for profile in profiles {
            self.mark_dirty(&profile.site_id, &profile.visitor_id);
        }
    }

    /// After a commit point's edit: `written[i]` is row `i` of `run`, now those profiles' home.
    pub fn settle(&mut self, run: Arc<Run>, written: &[Arc<VisitorProfile>]) {
        self.runs.insert(run.id(), run.clone());
        for (row, profile) in written.iter().enumerate() {
            if let Some(slot) = self.sites.get_mut(&profile.site_id).and_then(|s| s.slot_mut(&profile.visitor_id)) {
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
            for slot in &site.slots {
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
        let mut candidates: Vec<(u32, &String, &Arc<str>)> = Vec::new();
        for (site_id, site) in &self.sites {
            for slot in &site.slots {
                if slot.hot.is_some() && slot.home.is_some() && !slot.dirty {
                    candidates.push((slot.used.load(Ordering::Relaxed), site_id, &slot.visitor));
                }
            }
        }
        candidates.sort_unstable_by_key(|(used, _, _)| *used);
        let victims: Vec<(String, Arc<str>)> = candidates.into_iter().map(|(_, site, visitor)| (site.clone(), visitor.clone())).collect();
        let mut evicted = 0;
        for (site, visitor) in victims {
            if self.hot_bytes <= target {
                break;
            }
            if let Some(slot) = self.sites.get_mut(&site).and_then(|s| s.slot_mut(&visitor)) {
                slot.hot = None;
                self.hot_bytes -= slot.bytes as usize;
                slot.bytes = 0;
                evicted += 1;
            }
        }
        evicted
    }

    /// Estimated heap bytes of the hot profiles.
    pub fn hot_bytes(&self) -> usize {
        self.hot_bytes
    }

    pub fn hot_count(&self) -> usize {
        self.sites.values().flat_map(|s| s.slots.iter()).filter(|slot| slot.hot.is_some()).count()
    }

    pub fn len(&self) -> usize {
        self.sites.values().map(|s| s.slots.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A profile's heap footprint, estimated from its strings and collections (the budget's unit).
pub fn approx_bytes(profile: &VisitorProfile) -> usize {
    let text = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len() + 24);
    let utm = |u: &crm_schemas::Utm| [&u.source, &u.medium, &u.campaign, &u.term, &u.content].iter().map(|s| text(s)).sum::<usize>();
    let mut bytes = std::mem::size_of::<VisitorProfile>() + 48;
    bytes += profile.site_id.len() + profile.visitor_id.len();
    bytes += text(&profile.first_referrer) + text(&profile.landing_page) + utm(&profile.first_utm) + utm(&profile.last_utm);
    bytes += profile.device.browser.len() + profile.device.browser_version.len() + profile.device.os.len() + profile.device.os_version.len() + profile.device.category.len();
    bytes += text(&profile.geo.country) + text(&profile.geo.region) + text(&profile.geo.city) + text(&profile.geo.org);
    bytes += profile.intent_signals.keys().map(|k| k.len() + 64).sum::<usize>();
    bytes += profile.traits.iter().map(|(k, v)| k.len() + 64 + v.as_str().map_or(0, str::len)).sum::<usize>();
    bytes += profile.active_days.len() * 8;
    bytes += text(&profile.lead_id);
    bytes += profile.applied_offsets.keys().map(|k| k.len() + 64).sum::<usize>();
    if let Some(session) = &profile.current_session {
        bytes += std::mem::size_of_val(session) + session.session_id.len() + session.visitor_id.len() + session.site_id.len() + 256;
    }
    bytes
}

/// The rank values of a profile in [`SORTS`] order.
pub(crate) fn ranks_of(profile: &VisitorProfile) -> [u64; 3] {
    SORTS.map(|sort| rank_value(profile, sort))
}
