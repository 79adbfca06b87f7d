//! Typed replies of the informational commands: Stats (4), ListDBs (8), HealStats (11).
//! JSON replies use the v0.3 key names (`Name`, `ID`, `WALSize`, ...).

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// Server-wide counters (Stats, command 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Stats {
    /// Databases in the catalog.
    pub total_dbs: u64,
    /// Databases currently open.
    pub active_dbs: u64,
    /// Transactions committed since the server started.
    pub total_txns: u64,
    /// WAL bytes of the open databases.
    pub wal_size: u64,
    /// Bytes of live documents charged to the global memory budget.
    pub memory_used: u64,
}

impl Stats {
    /// Wire size of the reply: 5 × u64, little-endian.
    pub const WIRE_LEN: usize = 40;

    /// Decodes the 5 × u64 reply. Trailing bytes (fields a newer server may append)
    /// are ignored; a shorter reply is a protocol error.
    pub fn decode(data: &[u8]) -> Result<Stats> {
        let field = |i: usize| -> Result<u64> {
            data.get(i * 8..i * 8 + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| {
                    Error::protocol(format!(
                        "Stats reply of {} bytes, expected {}",
                        data.len(),
                        Self::WIRE_LEN
                    ))
                })
        };
        Ok(Stats {
            total_dbs: field(0)?,
            active_dbs: field(1)?,
            total_txns: field(2)?,
            wal_size: field(3)?,
            memory_used: field(4)?,
        })
    }
}

/// One database of the ListDBs (command 8) reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbInfo {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "ID")]
    pub id: u64,
    /// Creation time, RFC 3339.
    #[serde(rename = "CreatedAt", default)]
    pub created_at: String,
    #[serde(rename = "WALSize", default)]
    pub wal_size: u64,
    #[serde(rename = "MemoryUsed", default)]
    pub memory_used: u64,
    #[serde(rename = "DocsLive", default)]
    pub docs_live: u64,
}

/// Healing statistics of one database (HealStats, command 11).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealStats {
    #[serde(default)]
    pub total_scans: u64,
    #[serde(default)]
    pub documents_healed: u64,
    #[serde(default)]
    pub documents_corrupted: u64,
    #[serde(default)]
    pub on_demand_healings: u64,
    #[serde(default)]
    pub background_healings: u64,
    /// RFC 3339; `None` when no scan ran yet (the server sends Go's zero time).
    #[serde(default, deserialize_with = "time_or_never")]
    pub last_scan_time: Option<String>,
    /// RFC 3339; `None` when nothing was healed yet.
    #[serde(default, deserialize_with = "time_or_never")]
    pub last_healing_time: Option<String>,
    /// Documents found corrupt with no intact copy left (newer servers only).
    #[serde(default)]
    pub unrecoverable: Vec<Unrecoverable>,
}

/// A document that could not be healed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unrecoverable {
    #[serde(rename = "Collection")]
    pub collection: String,
    #[serde(rename = "ID")]
    pub id: u64,
}

/// What v0.3 (Go) sends for "never": the zero `time.Time`.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn time_or_never<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let t = Option::<String>::deserialize(d)?;
    Ok(t.filter(|t| !t.is_empty() && t != GO_ZERO_TIME))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stats_decode_five_little_endian_u64s() {
        let mut data = Vec::new();
        for v in [3u64, 2, 1 << 40, 4096, 77] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        let s = Stats::decode(&data).unwrap();
        assert_eq!(
            s,
            Stats {
                total_dbs: 3,
                active_dbs: 2,
                total_txns: 1 << 40,
                wal_size: 4096,
                memory_used: 77,
            }
        );
        data.extend_from_slice(&[9; 8]);
        assert_eq!(Stats::decode(&data).unwrap(), s, "extra fields are ignored");
        for n in 0..40 {
            let e = Stats::decode(&data[..n]).unwrap_err();
            assert!(e.is_protocol(), "{n}: {e}");
        }
    }

    #[test]
    fn db_info_uses_the_v03_keys() {
        let json = r#"[{"Name":"app","ID":7,"CreatedAt":"2024-01-02T03:04:05Z",
            "WALSize":100,"MemoryUsed":20,"DocsLive":3}]"#;
        let rows: Vec<DbInfo> = serde_json::from_str(json).unwrap();
        assert_eq!(
            rows,
            vec![DbInfo {
                name: "app".into(),
                id: 7,
                created_at: "2024-01-02T03:04:05Z".into(),
                wal_size: 100,
                memory_used: 20,
                docs_live: 3,
            }]
        );
    }

    #[test]
    fn heal_stats_map_go_zero_time_to_never() {
        let json = r#"{"TotalScans":2,"DocumentsHealed":1,"DocumentsCorrupted":1,
            "OnDemandHealings":1,"BackgroundHealings":0,
            "LastScanTime":"0001-01-01T00:00:00Z","LastHealingTime":"2024-05-06T07:08:09Z"}"#;
        let s: HealStats = serde_json::from_str(json).unwrap();
        assert_eq!(s.total_scans, 2);
        assert_eq!(s.last_scan_time, None);
        assert_eq!(s.last_healing_time.as_deref(), Some("2024-05-06T07:08:09Z"));
        assert!(s.unrecoverable.is_empty(), "absent in v0.3 replies");
        let json = r#"{"Unrecoverable":[{"Collection":"c","ID":5}]}"#;
        let s: HealStats = serde_json::from_str(json).unwrap();
        assert_eq!(
            s.unrecoverable,
            vec![Unrecoverable {
                collection: "c".into(),
                id: 5
            }]
        );
    }
}
