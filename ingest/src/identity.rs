//! Cookieless visitor ids: when an event carries no `visitor_id`, the collector derives one from a
//! keyed hash of (daily salt, site, client IP, user agent). Salts are random per UTC day, kept in
//! memory only and dropped after the day ends, so ids cannot be linked across days or recomputed
//! later by anyone (Plausible's practice). Restarting the collector starts a new salt.

use parking_lot::Mutex;
use rand::RngCore;
use sha2::{Digest, Sha256};

#[derive(Default)]
pub struct CookielessIds {
    salt: Mutex<Option<(i64, [u8; 32])>>,
}

impl CookielessIds {
    pub fn new() -> CookielessIds {
        CookielessIds::default()
    }

    fn salt_for(&self, day: i64) -> [u8; 32] {
        let mut slot = self.salt.lock();
        match *slot {
            Some((salt_day, salt)) if salt_day == day => salt,
            _ => {
                let mut salt = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut salt);
                *slot = Some((day, salt));
                salt
            }
        }
    }

    /// The pseudonymous id for this (site, ip, ua) on the UTC day of `now_ms`.
    pub fn derive(&self, now_ms: i64, site_id: &str, ip: &str, user_agent: &str) -> String {
        let salt = self.salt_for(crm_schemas::utc_day(now_ms));
        let mut hasher = Sha256::new();
        hasher.update(salt);
        for part in [site_id, ip, user_agent] {
            hasher.update((part.len() as u32).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        let mut id = String::with_capacity(3 + 32);
        id.push_str("cl-");
        for byte in &digest[..16] {
            id.push_str(&format!("{byte:02x}"));
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_within_a_day_and_unlinkable_across_days() {
        let ids = CookielessIds::new();
        let day = 20_000 * crm_schemas::DAY_MS;
        let a = ids.derive(day + 1, "s", "1.2.3.4", "UA");
        assert_eq!(a, ids.derive(day + 5000, "s", "1.2.3.4", "UA"));
        assert_ne!(a, ids.derive(day + 1, "s", "1.2.3.5", "UA"));
        assert_ne!(a, ids.derive(day + 1, "t", "1.2.3.4", "UA"));
        let next_day = ids.derive(day + crm_schemas::DAY_MS, "s", "1.2.3.4", "UA");
        assert_ne!(a, next_day);
        assert!(a.starts_with("cl-") && a.len() == 35);
    }
}
