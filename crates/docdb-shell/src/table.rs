//! Tables for the terminal: aligned columns and human times.

use docdb_client::DbInfo;

/// Left-aligns text columns and right-aligns number columns (`true` in `numeric`),
/// two spaces apart; the last column carries no trailing spaces.
pub fn align(rows: &[Vec<String>], numeric: &[bool]) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, s)| {
                    let w = width[c];
                    if numeric.get(c).copied().unwrap_or(false) {
                        format!("{s:>w$}")
                    } else {
                        format!("{s:<w$}")
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

/// An RFC 3339 UTC time (`2026-12-02T04:05:06.123456789Z`) as `2026-12-02 04:05:06 UTC`;
/// anything else is shown as it came.
pub fn human_time(rfc3339: &str) -> String {
    let b = rfc3339.as_bytes();
    let shape_ok = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && rfc3339.ends_with('Z')
        && (b.len() == 20 || b[19] == b'.')
        && b[..19]
            .iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16) || c.is_ascii_digit());
    if shape_ok {
        format!("{} {} UTC", &rfc3339[..10], &rfc3339[11..19])
    } else {
        rfc3339.to_string()
    }
}

/// `.list-dbs`: a header, then one aligned row per database.
pub fn list_dbs(dbs: &[DbInfo]) -> Vec<String> {
    let mut rows = vec![
        ["ID", "NAME", "CREATED", "DOCS", "WAL BYTES", "MEMORY BYTES"]
            .map(String::from)
            .to_vec(),
    ];
    rows.extend(dbs.iter().map(|d| {
        vec![
            d.id.to_string(),
            d.name.clone(),
            human_time(&d.created_at),
            d.docs_live.to_string(),
            d.wal_size.to_string(),
            d.memory_used.to_string(),
        ]
    }));
    align(&rows, &[true, false, false, true, true, true])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_human() {
        assert_eq!(
            human_time("2026-12-02T04:05:06.123456789Z"),
            "2026-12-02 04:05:06 UTC"
        );
        assert_eq!(
            human_time("2024-01-02T03:04:05Z"),
            "2024-01-02 03:04:05 UTC"
        );
        assert_eq!(human_time("yesterday"), "yesterday");
        assert_eq!(
            human_time("2024-01-02T03:04:05+02:00"),
            "2024-01-02T03:04:05+02:00"
        );
        assert_eq!(
            human_time("2024-01-02T03:04:05ééZ"),
            "2024-01-02T03:04:05ééZ"
        );
    }

    #[test]
    fn list_dbs_columns_line_up() {
        let db = |id, name: &str, docs| DbInfo {
            name: name.into(),
            id,
            created_at: "2026-12-02T04:05:06.5Z".into(),
            wal_size: 4096,
            memory_used: 12,
            docs_live: docs,
        };
        let out = list_dbs(&[db(1, "a", 3), db(12, "shipping", 1500)]);
        assert_eq!(
            out,
            [
                "ID  NAME      CREATED                  DOCS  WAL BYTES  MEMORY BYTES",
                " 1  a         2026-12-02 04:05:06 UTC     3       4096            12",
                "12  shipping  2026-12-02 04:05:06 UTC  1500       4096            12",
            ]
        );
    }
}
