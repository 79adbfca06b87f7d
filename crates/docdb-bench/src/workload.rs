//! What the workers send: operation kinds, the CRUD mix, a small seeded random number
//! generator, and deterministic document bodies.
//!
//! A body is a pure function of `(seed, id, version)`, so a validating worker only has
//! to remember a version number per id to know the exact bytes a read must return.

use std::fmt;
use std::io::Write as _;
use std::str::FromStr;

/// One kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Read,
    Create,
    Update,
    Delete,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Read, Op::Create, Op::Update, Op::Delete];

    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Percentages of read, create, update and delete; they sum to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub read: u8,
    pub create: u8,
    pub update: u8,
    pub delete: u8,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            read: 40,
            create: 30,
            update: 20,
            delete: 10,
        }
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let [r, c, u, d] = parts.as_slice() else {
            return Err(format!(
                "mix {s:?}: expected four percentages read,create,update,delete"
            ));
        };
        let pct = |p: &str| {
            p.parse::<u8>()
                .map_err(|_| format!("mix {s:?}: {p:?} is not a percentage"))
        };
        let mix = Mix {
            read: pct(r)?,
            create: pct(c)?,
            update: pct(u)?,
            delete: pct(d)?,
        };
        let sum: u32 = [mix.read, mix.create, mix.update, mix.delete]
            .iter()
            .map(|&p| u32::from(p))
            .sum();
        if sum != 100 {
            return Err(format!("mix {s:?}: percentages sum to {sum}, not 100"));
        }
        Ok(mix)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{},{}",
            self.read, self.create, self.update, self.delete
        )
    }
}

impl Mix {
    /// The operation for a roll in `0..100`.
    pub fn pick(&self, roll: u64) -> Op {
        let mut edge = 0u64;
        for (op, pct) in [
            (Op::Read, self.read),
            (Op::Create, self.create),
            (Op::Update, self.update),
        ] {
            edge += u64::from(pct);
            if roll < edge {
                return op;
            }
        }
        Op::Delete
    }
}

/// SplitMix64: tiny, fast, good enough to pick ids and operations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A generator for one worker, independent of the others.
    pub fn for_worker(seed: u64, stream: u64) -> Self {
        Rng(mix64(
            seed ^ mix64(stream.wrapping_add(0x9e37_79b9_7f4a_7c15)),
        ))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The SplitMix64 finaliser.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Window of pool bytes a body's padding can start in.
const POOL_SPREAD: usize = 64 * 1024;

/// Makes document bodies of (at least) a given size:
/// `{"id":<id>,"v":<version>,"pad":"<letters and digits>"}`. The padding is cut from
/// a seeded pool at an offset derived from `(id, version)`, so bodies differ per
/// version and cost about one `memcpy` to make.
#[derive(Debug, Clone)]
pub struct DocGen {
    seed: u64,
    size: usize,
    pool: Vec<u8>,
}

impl DocGen {
    pub fn new(seed: u64, size: usize) -> Self {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut rng = Rng::new(mix64(seed ^ 0xd0cd_b000));
        let pool = (0..size + POOL_SPREAD)
            .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
            .collect();
        DocGen { seed, size, pool }
    }

    /// The body size asked for; a body is longer only when its prefix alone is.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The length of the body of `(id, version)`, without making it.
    pub fn len_of(&self, id: u64, version: u32) -> usize {
        let prefix = 19 + digits(id) + digits(u64::from(version));
        self.size.max(prefix + 2)
    }

    /// Writes the body of `(id, version)` into `out` (cleared first).
    pub fn body_into(&self, id: u64, version: u32, out: &mut Vec<u8>) {
        out.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(out, r#"{{"id":{id},"v":{version},"pad":""#);
        let pad = self.size.saturating_sub(out.len() + 2);
        let h = mix64(self.seed ^ mix64(id ^ (u64::from(version) << 48)));
        let start = (h % POOL_SPREAD as u64) as usize;
        out.extend_from_slice(&self.pool[start..start + pad]);
        out.extend_from_slice(b"\"}");
    }

    pub fn body(&self, id: u64, version: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.size.max(48));
        self.body_into(id, version, &mut v);
        v
    }
}

fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid_json_of_the_asked_size_and_differ_per_version() {
        let g = DocGen::new(7, 1024);
        let a = g.body(12345, 0);
        assert_eq!(a.len(), 1024);
        let v: serde_json::Value = serde_json::from_slice(&a).expect("valid JSON");
        assert_eq!(v["id"], 12345);
        assert_ne!(a, g.body(12345, 1));
        assert_eq!(a, g.body(12345, 0), "deterministic");
        assert!(g.body(u64::MAX, u32::MAX).len() >= 40);
        for (id, v) in [(1, 0), (12345, 7), (u64::MAX, u32::MAX)] {
            for size in [1, 30, 64, 1024] {
                let g = DocGen::new(3, size);
                assert_eq!(g.len_of(id, v), g.body(id, v).len(), "{id} {v} {size}");
            }
        }
        let tiny = DocGen::new(7, 1).body(1, 0);
        serde_json::from_slice::<serde_json::Value>(&tiny).expect("valid JSON");
    }

    #[test]
    fn mix_parses_and_picks_by_percentage() {
        let m: Mix = "40,30,20,10".parse().expect("valid mix");
        assert_eq!(m, Mix::default());
        assert_eq!(m.pick(0), Op::Read);
        assert_eq!(m.pick(39), Op::Read);
        assert_eq!(m.pick(40), Op::Create);
        assert_eq!(m.pick(89), Op::Update);
        assert_eq!(m.pick(99), Op::Delete);
        assert!("50,50,10,0".parse::<Mix>().is_err());
        assert!("1,2,3".parse::<Mix>().is_err());
        assert_eq!(
            "0,100,0,0".parse::<Mix>().map(|m| m.pick(5)),
            Ok(Op::Create)
        );
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::for_worker(1, 2);
        assert!((0..10_000).all(|_| r.below(7) < 7));
    }
}
