//! Database-name patterns of tokens and `[auth.peer]` entries: `*` (any run of
//! characters, none included), `?` (one character), `[abc]`, `[a-z]`, `[!a-z]` (one
//! character in / not in the set). Everything else matches itself. Names are short
//! (≤ 64 bytes), so a simple matcher is enough: it backtracks only to the last `*`,
//! which bounds it to O(pattern × name).

/// One parsed piece of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Star,
    Any,
    Char(char),
    /// A bracket set: its ranges (a single character is a range of one) and whether
    /// it is negated.
    Set(Vec<(char, char)>, bool),
}

/// A checked pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    pieces: Vec<Piece>,
}

/// Longest pattern accepted (a database name is at most 64 bytes; wildcards add a
/// few).
pub const MAX_PATTERN: usize = 256;

impl Glob {
    /// Parses `text`; the error says what is wrong.
    pub fn new(text: &str) -> Result<Glob, String> {
        if text.is_empty() {
            return Err("database pattern is empty".into());
        }
        if text.len() > MAX_PATTERN {
            return Err(format!(
                "database pattern is longer than {MAX_PATTERN} bytes"
            ));
        }
        let mut pieces = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            pieces.push(match c {
                '*' => {
                    if pieces.last() == Some(&Piece::Star) {
                        continue;
                    }
                    Piece::Star
                }
                '?' => Piece::Any,
                '[' => {
                    let negated = chars.next_if_eq(&'!').is_some();
                    let mut ranges = Vec::new();
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        if c == ']' && !ranges.is_empty() {
                            closed = true;
                            break;
                        }
                        if chars.next_if_eq(&'-').is_some() {
                            match chars.peek() {
                                Some(&hi) if hi != ']' => {
                                    chars.next();
                                    if hi < c {
                                        return Err(format!(
                                            "database pattern {text:?}: range {c}-{hi} is backwards"
                                        ));
                                    }
                                    ranges.push((c, hi));
                                }
                                _ => {
                                    ranges.push((c, c));
                                    ranges.push(('-', '-'));
                                }
                            }
                        } else {
                            ranges.push((c, c));
                        }
                    }
                    if !closed {
                        return Err(format!("database pattern {text:?}: unclosed '['"));
                    }
                    Piece::Set(ranges, negated)
                }
                c => Piece::Char(c),
            });
        }
        Ok(Glob {
            text: text.to_string(),
            pieces,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let p = &self.pieces;
        let (mut pi, mut ni) = (0usize, 0usize);
        // Where to resume after the last `*`: (piece after it, name position).
        let mut resume: Option<(usize, usize)> = None;
        while ni < name.len() {
            let step = match p.get(pi) {
                Some(Piece::Star) => {
                    resume = Some((pi + 1, ni));
                    pi += 1;
                    continue;
                }
                Some(Piece::Any) => true,
                Some(Piece::Char(c)) => *c == name[ni],
                Some(Piece::Set(ranges, negated)) => {
                    let c = name[ni];
                    ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
                }
                None => false,
            };
            if step {
                pi += 1;
                ni += 1;
            } else if let Some((rp, rn)) = resume {
                // Let the last `*` take one more character and try again.
                pi = rp;
                ni = rn + 1;
                resume = Some((rp, rn + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|x| *x == Piece::Star)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        Glob::new(p).unwrap().matches(n)
    }

    #[test]
    fn wildcards_sets_and_literals() {
        assert!(m("*", "anything"));
        assert!(m("*", ""));
        assert!(m("tenant-*", "tenant-a"));
        assert!(m("tenant-*", "tenant-"));
        assert!(!m("tenant-*", "tenant"));
        assert!(!m("tenant-*", "xtenant-a"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("db[0-9]", "db7"));
        assert!(!m("db[0-9]", "dbx"));
        assert!(m("db[!0-9]", "dbx"));
        assert!(!m("db[!0-9]", "db1"));
        assert!(m("[ab-]x", "-x"));
        assert!(m("*-prod-*", "eu-prod-1"));
        assert!(!m("*-prod-*", "eu-dev-1"));
        assert!(m("a*b*c", "aXXbYYbc"));
        assert!(!m("a*b*c", "aXXbYYb"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exact2"));
        assert!(m("**x", "abx"));
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        assert!(Glob::new("").unwrap_err().contains("empty"));
        assert!(Glob::new("a[bc").unwrap_err().contains("unclosed"));
        assert!(Glob::new("[z-a]").unwrap_err().contains("backwards"));
        assert!(Glob::new(&"x".repeat(300)).unwrap_err().contains("longer"));
    }

    #[test]
    fn many_stars_stay_fast() {
        let g = Glob::new(&"*a".repeat(30)).unwrap();
        let name = "a".repeat(29) + "b";
        let t = std::time::Instant::now();
        assert!(!g.matches(&name));
        assert!(t.elapsed() < std::time::Duration::from_millis(100));
    }
}
