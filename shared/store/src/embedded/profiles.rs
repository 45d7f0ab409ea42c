//! How a visitor profile is laid out in the embedded store's `visitor_profiles` table: a fixed
//! 25-byte header with the rank keys the profile is indexed under (bot flag, then the intent,
//! engagement and last-seen rank values, big-endian), followed by the profile's JSON.
//!
//! Keeping the rank keys in the row itself lets a write learn the old index entries from the
//! value the insert replaces, so a profile update is one B-tree write plus its rank entries,
//! with no separate lookup table (measured: `bench/ANALYSIS.md`).

use crm_schemas::VisitorProfile;

use super::{decode, encode, SORTS};
use crate::{rank_value, Result, StoreError};

const HEADER: usize = 1 + 3 * 8;

/// The rank keys of a profile: (is_bot, [intent, engagement, last seen]).
pub(super) type RankKeys = (bool, [u64; 3]);

pub(super) fn rank_keys_of(profile: &VisitorProfile) -> RankKeys {
    (profile.is_bot, SORTS.map(|sort| rank_value(profile, sort)))
}

/// The stored row of `profile`.
pub(super) fn pack(profile: &VisitorProfile) -> Result<Vec<u8>> {
    let (is_bot, values) = rank_keys_of(profile);
    let json = encode(profile)?;
    let mut row = Vec::with_capacity(HEADER + json.len());
    row.push(u8::from(is_bot));
    for value in values {
        row.extend_from_slice(&value.to_be_bytes());
    }
    row.extend_from_slice(&json);
    Ok(row)
}

/// The rank keys a stored row is indexed under, without decoding its JSON.
pub(super) fn rank_keys(row: &[u8]) -> Result<RankKeys> {
    if row.len() < HEADER {
        return Err(StoreError::Corrupt(format!("visitor row of {} bytes is shorter than its header", row.len())));
    }
    let value = |i: usize| u64::from_be_bytes(row[1 + i * 8..9 + i * 8].try_into().expect("8 bytes"));
    Ok((row[0] == 1, [value(0), value(1), value(2)]))
}

pub(super) fn unpack(row: &[u8]) -> Result<VisitorProfile> {
    if row.len() < HEADER {
        return Err(StoreError::Corrupt(format!("visitor row of {} bytes is shorter than its header", row.len())));
    }
    decode(&row[HEADER..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_round_trips_and_exposes_its_rank_keys() {
        let profile = VisitorProfile {
            site_id: "s".into(),
            visitor_id: "v".into(),
            intent_score: 70,
            engagement_score: 12,
            last_seen_ms: 1_700_000_000_000,
            is_bot: true,
            ..VisitorProfile::default()
        };
        let row = pack(&profile).unwrap();
        assert_eq!(unpack(&row).unwrap(), profile);
        assert_eq!(rank_keys(&row).unwrap(), rank_keys_of(&profile));
        assert!(rank_keys(&row).unwrap().0);
    }

    #[test]
    fn short_or_garbled_rows_are_corrupt_not_panics() {
        assert!(matches!(rank_keys(b"short"), Err(StoreError::Corrupt(_))));
        assert!(matches!(unpack(b""), Err(StoreError::Corrupt(_))));
        let mut row = vec![0u8; HEADER];
        row.extend_from_slice(b"{not json");
        assert!(matches!(unpack(&row), Err(StoreError::Corrupt(_))));
    }
}
