//! Backend-neutral knowledge-base analytics from the raw daily [`KbCounter`] rows, so every
//! store reports the same series, deflection rate, top articles and content gaps.
//!
//! How the API writes counters (and so how they are read here):
//! - site rows (`article_id` and `query` empty): searches, no-result searches, deflections, handoffs;
//! - article rows (`article_id` set): views and helpful yes/no of that article;
//! - gap rows (`query` set): no-result searches of that normalised query. They repeat what the
//!   site row already counts, so daily totals skip them.
//!
//! Deflection: a visitor's question answered without a person, i.e. an article marked helpful or
//! a chat resolved without a handoff. The deflection rate is deflections / (deflections + handoffs).

use std::collections::BTreeMap;

use crm_schemas::KbCounter;
use serde::Serialize;

/// One day's totals (also the window's totals, with `day` = the window's first day).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KbDay {
    pub day: i64,
    pub views: u64,
    pub searches: u64,
    pub no_result_searches: u64,
    pub helpful_yes: u64,
    pub helpful_no: u64,
    pub deflections: u64,
    pub handoffs: u64,
}

impl KbDay {
    fn add(&mut self, c: &KbCounter) {
        self.views += c.views;
        self.searches += c.searches;
        self.no_result_searches += c.no_result_searches;
        self.helpful_yes += c.helpful_yes;
        self.helpful_no += c.helpful_no;
        self.deflections += c.deflections;
        self.handoffs += c.handoffs;
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KbArticleStats {
    pub article_id: String,
    pub views: u64,
    pub helpful_yes: u64,
    pub helpful_no: u64,
    /// yes / (yes + no); `None` before any vote.
    pub helpful_rate: Option<f64>,
}

/// A search nobody found a good answer to: write an article for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KbGap {
    pub query: String,
    pub count: u64,
    pub last_day: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KbReport {
    pub from_day: i64,
    pub to_day: i64,
    /// Every day of `from_day..to_day`, zeros included.
    pub days: Vec<KbDay>,
    pub totals: KbDay,
    /// deflections / (deflections + handoffs); `None` when both are 0.
    pub deflection_rate: Option<f64>,
    /// By views, then by helpful votes, then by id.
    pub top_articles: Vec<KbArticleStats>,
    /// By count, then most recent, then query.
    pub gaps: Vec<KbGap>,
}

/// The longest window a report covers, in days.
pub const MAX_REPORT_DAYS: i64 = 400;

fn rate(yes: u64, no: u64) -> Option<f64> {
    (yes + no > 0).then(|| yes as f64 / (yes + no) as f64)
}

impl KbReport {
    /// The report of days `from_day..to_day` (clamped to [`MAX_REPORT_DAYS`]) from the summed
    /// counters of that window; rows outside it are ignored.
    pub fn build(from_day: i64, to_day: i64, counters: &[KbCounter], top_n: usize) -> KbReport {
        let to_day = to_day.clamp(from_day, from_day.saturating_add(MAX_REPORT_DAYS));
        let mut days: Vec<KbDay> = (from_day..to_day).map(|day| KbDay { day, ..KbDay::default() }).collect();
        let mut articles: BTreeMap<&str, KbArticleStats> = BTreeMap::new();
        let mut gaps: BTreeMap<&str, KbGap> = BTreeMap::new();
        for c in counters.iter().filter(|c| (from_day..to_day).contains(&c.day)) {
            if !c.query.is_empty() {
                let gap = gaps.entry(&c.query).or_insert_with(|| KbGap { query: c.query.clone(), count: 0, last_day: c.day });
                gap.count += c.no_result_searches;
                gap.last_day = gap.last_day.max(c.day);
                continue;
            }
            days[(c.day - from_day) as usize].add(c);
            if !c.article_id.is_empty() {
                let stats = articles.entry(&c.article_id).or_insert_with(|| KbArticleStats {
                    article_id: c.article_id.clone(),
                    views: 0,
                    helpful_yes: 0,
                    helpful_no: 0,
                    helpful_rate: None,
                });
                stats.views += c.views;
                stats.helpful_yes += c.helpful_yes;
                stats.helpful_no += c.helpful_no;
            }
        }
        let mut totals = KbDay { day: from_day, ..KbDay::default() };
        for d in &days {
            totals.add(&KbCounter {
                views: d.views,
                searches: d.searches,
                no_result_searches: d.no_result_searches,
                helpful_yes: d.helpful_yes,
                helpful_no: d.helpful_no,
                deflections: d.deflections,
                handoffs: d.handoffs,
                ..KbCounter::default()
            });
        }
        let mut top_articles: Vec<KbArticleStats> = articles
            .into_values()
            .map(|mut s| {
                s.helpful_rate = rate(s.helpful_yes, s.helpful_no);
                s
            })
            .collect();
        top_articles.sort_by(|a, b| {
            (b.views, b.helpful_yes + b.helpful_no).cmp(&(a.views, a.helpful_yes + a.helpful_no)).then_with(|| a.article_id.cmp(&b.article_id))
        });
        top_articles.truncate(top_n);
        let mut gaps: Vec<KbGap> = gaps.into_values().filter(|g| g.count > 0).collect();
        gaps.sort_by(|a, b| (b.count, b.last_day).cmp(&(a.count, a.last_day)).then_with(|| a.query.cmp(&b.query)));
        gaps.truncate(top_n);
        KbReport { from_day, to_day, deflection_rate: rate(totals.deflections, totals.handoffs), days, totals, top_articles, gaps }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(day: i64, article: &str, query: &str) -> KbCounter {
        KbCounter::key("s", day, article, query)
    }

    #[test]
    fn report_fills_days_and_splits_rows_by_kind() {
        let rows = vec![
            KbCounter { searches: 10, no_result_searches: 3, deflections: 3, handoffs: 1, ..c(100, "", "") },
            KbCounter { views: 7, helpful_yes: 3, helpful_no: 1, ..c(100, "art_a", "") },
            KbCounter { views: 9, ..c(102, "art_b", "") },
            KbCounter { views: 2, helpful_yes: 1, ..c(102, "art_a", "") },
            KbCounter { no_result_searches: 2, ..c(100, "", "sso pricing") },
            KbCounter { no_result_searches: 1, ..c(102, "", "sso pricing") },
            KbCounter { no_result_searches: 3, ..c(101, "", "gdpr") },
            KbCounter { searches: 99, ..c(99, "", "") }, // outside the window
        ];
        let report = KbReport::build(100, 103, &rows, 10);
        assert_eq!(report.days.iter().map(|d| (d.day, d.views, d.searches)).collect::<Vec<_>>(), [(100, 7, 10), (101, 0, 0), (102, 11, 0)]);
        assert_eq!(report.totals.no_result_searches, 3, "gap rows repeat the site row and are not added again");
        assert_eq!(report.deflection_rate, Some(0.75));
        let top: Vec<_> = report.top_articles.iter().map(|a| (a.article_id.as_str(), a.views, a.helpful_rate)).collect();
        assert_eq!(top, [("art_a", 9, Some(0.8)), ("art_b", 9, None)], "a tie on views goes to the more voted article");
        let gaps: Vec<_> = report.gaps.iter().map(|g| (g.query.as_str(), g.count, g.last_day)).collect();
        assert_eq!(gaps, [("sso pricing", 3, 102), ("gdpr", 3, 101)]);
        assert_eq!(KbReport::build(100, 103, &rows, 1).top_articles.len(), 1);
    }

    #[test]
    fn empty_and_inverted_windows() {
        let report = KbReport::build(5, 5, &[], 10);
        assert!(report.days.is_empty() && report.deflection_rate.is_none());
        let inverted = KbReport::build(5, 1, &[KbCounter { searches: 1, ..c(5, "", "") }], 10);
        assert!(inverted.days.is_empty() && inverted.totals.searches == 0);
        assert_eq!(KbReport::build(0, 10_000, &[], 1).days.len() as i64, MAX_REPORT_DAYS);
    }
}
