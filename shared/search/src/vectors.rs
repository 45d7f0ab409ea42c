//! Article embeddings per site, searched exhaustively. An article has one embedding per
//! passage (see [`crate::hybrid::passages`]) and scores as its best passage. A site's help
//! centre has thousands of articles, not millions: 10 000 articles of five passages are 50 000
//! dot products of 384 floats, a few milliseconds, so an approximate index would add recall loss
//! for no gain at this size.

use std::collections::HashMap;

/// One site's embeddings: each article's passage vectors, back to back.
#[derive(Default)]
pub struct SiteVectors {
    dimensions: usize,
    articles: HashMap<String, Vec<f32>>,
}

impl SiteVectors {
    pub fn len(&self) -> usize {
        self.articles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.articles.is_empty()
    }

    /// Sets `id`'s passage vectors (`rows`, each `dimensions` long, back to back). Every vector of
    /// a site has the same length (the first article's); anything else is refused.
    pub fn upsert(&mut self, id: &str, dimensions: usize, rows: Vec<f32>) -> bool {
        if self.articles.is_empty() {
            self.dimensions = dimensions;
        }
        if dimensions != self.dimensions || dimensions == 0 || rows.is_empty() || !rows.len().is_multiple_of(dimensions) {
            return false;
        }
        self.articles.insert(id.to_owned(), rows);
        true
    }

    pub fn remove(&mut self, id: &str) {
        self.articles.remove(id);
    }

    /// The `k` articles most similar to `query` (normalised, like the passages: the dot product
    /// is the cosine), best first, each with its best passage's similarity; ties go to the
    /// lower id.
    pub fn nearest(&self, query: &[f32], k: usize) -> Vec<(&str, f32)> {
        if query.len() != self.dimensions || k == 0 {
            return Vec::new();
        }
        let mut scored: Vec<(&str, f32)> = self
            .articles
            .iter()
            .map(|(id, rows)| {
                let best = rows.chunks_exact(self.dimensions).map(|row| dot(row, query)).fold(f32::MIN, f32::max);
                (id.as_str(), best)
            })
            .collect();
        let order = |a: &(&str, f32), b: &(&str, f32)| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0));
        if scored.len() > k {
            scored.select_nth_unstable_by(k - 1, order);
            scored.truncate(k);
        }
        scored.sort_unstable_by(order);
        scored
    }
}

/// The dot product in eight independent lanes: a plain `zip().sum()` is one chain of dependent
/// float additions the compiler may not reorder, so it does not vectorise (at 10 000 articles
/// that chain took ~25 ms of a search, bench/RESULTS.md).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (chunks_a, chunks_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::normalised;

    #[test]
    fn dot_matches_the_plain_sum_for_every_length() {
        for len in [0usize, 1, 7, 8, 9, 384, 385] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "{len}");
        }
    }

    #[test]
    fn articles_rank_by_their_best_passage_and_follow_upserts_and_removals() {
        let mut site = SiteVectors::default();
        assert!(site.upsert("a", 3, normalised(vec![1.0, 0.0, 0.0])));
        // b's second passage is the one close to the query.
        let b: Vec<f32> = normalised(vec![0.0, 0.0, 1.0]).into_iter().chain(normalised(vec![0.9, 0.3, 0.0])).collect();
        assert!(site.upsert("b", 3, b));
        assert!(site.upsert("c", 3, normalised(vec![0.0, 0.0, 1.0])));
        assert!(!site.upsert("d", 2, vec![1.0, 0.0]), "another length is refused");
        assert!(!site.upsert("d", 3, vec![1.0, 0.0]), "a partial row is refused");
        let q = normalised(vec![1.0, 0.4, 0.0]);
        let ids = |hits: Vec<(&str, f32)>| hits.into_iter().map(|(id, _)| id.to_owned()).collect::<Vec<_>>();
        assert_eq!(ids(site.nearest(&q, 10)), ["b", "a", "c"]);
        assert_eq!(ids(site.nearest(&q, 1)), ["b"]);
        site.upsert("b", 3, normalised(vec![0.0, 1.0, 0.0]));
        assert_eq!(ids(site.nearest(&q, 1)), ["a"], "an upsert replaces every passage");
        site.remove("a");
        site.remove("nobody");
        assert_eq!(site.len(), 2);
        assert_eq!(ids(site.nearest(&q, 10)), ["b", "c"]);
        assert!(site.nearest(&[1.0], 3).is_empty(), "a query of another length finds nothing");
    }
}
