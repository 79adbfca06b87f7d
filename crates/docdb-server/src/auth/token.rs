//! Signed access tokens: compact JWS (RFC 7515) JWTs signed with Ed25519 (`EdDSA`),
//! made and checked with `ring`; the JWS framing (three base64url parts) is the few
//! lines below, so the only algorithm this server ever accepts is `EdDSA` with its own
//! key (no `alg: none`, no HMAC-with-the-public-key confusion).
//!
//! Token: `base64url(header) . base64url(claims) . base64url(signature)` with header
//! `{"alg":"EdDSA","typ":"JWT","kid":K}` and claims `{"db":GLOB,"rights":R,"iat":T,
//! "exp":T?}` (unix seconds), K = the first 8 bytes of SHA-256 of the public key, hex.
//!
//! The key pair is one file, `<data-dir>/keys/token.ed25519` (PKCS#8 v2 DER, holding
//! the public key too), mode 0600 in a 0700 directory. It is made at first use by
//! whoever issues first: written to a temporary file, fsynced, then hard-linked into
//! place, which fails if another issuer got there first (then theirs is used), so two
//! issuers never hand out tokens of two different keys. Rotation writes a new key the
//! same way and renames it over the old one. The server reads the file again whenever
//! its identity (inode, size, mtime) changes, checked by one `stat` per Auth, so a
//! rotation takes effect at the next Auth without a restart.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use parking_lot::Mutex;
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use super::glob::Glob;
use super::Rights;

/// The key directory inside a data directory.
pub fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

/// The key pair's file inside a data directory.
pub fn key_path(data_dir: &Path) -> PathBuf {
    keys_dir(data_dir).join("token.ed25519")
}

/// Longest token accepted (a real one is ~250 bytes).
pub const MAX_TOKEN: usize = 4096;

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Pattern of the database names it reaches.
    pub db: String,
    pub rights: Rights,
    /// Issued at, unix seconds.
    pub iat: u64,
    /// Expires at, unix seconds; none: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// Why a token was refused (the text follows `permission denied: `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("bad signature")]
    BadSignature,
    #[error("bad signature: the token was signed with another key (was the key rotated?)")]
    OtherKey,
    #[error("token expired")]
    Expired,
    #[error("the server has no token key ({0}); issue a token with `docdb token issue` first")]
    NoKey(String),
}

/// A key pair loaded from its file.
pub struct Signer {
    pair: Ed25519KeyPair,
    kid: String,
}

impl Signer {
    fn from_pkcs8(der: &[u8], path: &Path) -> anyhow::Result<Signer> {
        let pair = Ed25519KeyPair::from_pkcs8(der)
            .map_err(|e| anyhow::anyhow!("{} is not an Ed25519 PKCS#8 key: {e}", path.display()))?;
        let kid = key_id(pair.public_key().as_ref());
        Ok(Signer { pair, kid })
    }

    /// The key id written in every token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn verifier(&self) -> Verifier {
        Verifier {
            public: self.pair.public_key().as_ref().to_vec(),
            kid: self.kid.clone(),
        }
    }

    /// Signs `claims` into a token.
    pub fn issue(&self, claims: &Claims) -> String {
        let header = Header {
            alg: "EdDSA".into(),
            typ: Some("JWT".into()),
            kid: Some(self.kid.clone()),
        };
        let mut out = B64.encode(serde_json::to_vec(&header).unwrap_or_default());
        out.push('.');
        out.push_str(&B64.encode(serde_json::to_vec(claims).unwrap_or_default()));
        let sig = self.pair.sign(out.as_bytes());
        out.push('.');
        out.push_str(&B64.encode(sig.as_ref()));
        out
    }
}

fn key_id(public: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, public);
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks tokens against one public key.
#[derive(Debug, Clone)]
pub struct Verifier {
    public: Vec<u8>,
    kid: String,
}

impl Verifier {
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The claims of `token` if it is well formed, signed by this key, and not
    /// expired at `now` (unix seconds).
    pub fn verify(&self, token: &[u8], now: u64) -> Result<Claims, TokenError> {
        let bad = |why: &str| TokenError::Malformed(why.to_string());
        if token.len() > MAX_TOKEN {
            return Err(bad("longer than 4096 bytes"));
        }
        let token = std::str::from_utf8(token).map_err(|_| bad("not UTF-8"))?;
        let token = token.trim();
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected three base64url parts separated by '.'"));
        };
        let header = B64.decode(h).map_err(|_| bad("header is not base64url"))?;
        let header: Header =
            serde_json::from_slice(&header).map_err(|_| bad("header is not JSON"))?;
        if header.alg != "EdDSA" {
            return Err(TokenError::Malformed(format!(
                "algorithm {:?} (only EdDSA is accepted)",
                header.alg
            )));
        }
        let sig = B64
            .decode(s)
            .map_err(|_| bad("signature is not base64url"))?;
        let signed = &token.as_bytes()[..h.len() + 1 + c.len()];
        let key = UnparsedPublicKey::new(&signature::ED25519, &self.public);
        if key.verify(signed, &sig).is_err() {
            return Err(match header.kid {
                Some(k) if k != self.kid => TokenError::OtherKey,
                _ => TokenError::BadSignature,
            });
        }
        let claims = B64.decode(c).map_err(|_| bad("claims are not base64url"))?;
        let claims: Claims = serde_json::from_slice(&claims)
            .map_err(|e| TokenError::Malformed(format!("claims: {e}")))?;
        Glob::new(&claims.db).map_err(TokenError::Malformed)?;
        if claims.exp.is_some_and(|exp| exp <= now) {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parses `90s`, `15m`, `12h`, `30d` (one number, one unit).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("{s:?} is not a duration like 90s, 15m, 12h or 30d");
    let s = s.trim();
    let unit = s.chars().last().ok_or_else(err)?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(err()),
    };
    let n: u64 = s[..s.len() - 1].parse().map_err(|_| err())?;
    if n == 0 {
        return Err(format!("{s:?}: the duration must be longer than 0"));
    }
    n.checked_mul(secs)
        .filter(|t| *t <= 100 * 365 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?}: the duration must be at most 100 years"))
}

/// Makes `dir` (and its parents) with mode 0700 whatever the umask.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| anyhow::anyhow!("setting the mode of {}: {e}", dir.display()))?;
    Ok(())
}

/// Writes a new key pair to a temporary file in `dir` (0600, fsynced); returns its path.
fn write_new_key(dir: &Path) -> anyhow::Result<PathBuf> {
    let rng = SystemRandom::new();
    let der = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("generating an Ed25519 key failed"))?;
    let tmp = dir.join(format!(
        ".token.ed25519.{}.{}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    f.write_all(der.as_ref())?;
    f.sync_all()?;
    Ok(tmp)
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| anyhow::anyhow!("syncing {}: {e}", dir.display()))
}

fn load(path: &Path) -> anyhow::Result<Signer> {
    let der = fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    Signer::from_pkcs8(&der, path)
}

/// The data directory's key pair, made now if it has none. Safe against another
/// issuer doing the same at the same time: exactly one key wins and both use it.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Signer> {
    let path = key_path(data_dir);
    if path.exists() {
        return load(&path);
    }
    let dir = keys_dir(data_dir);
    private_dir(&dir)?;
    let tmp = write_new_key(&dir)?;
    // INVARIANT: hard_link never replaces: if another issuer linked first, theirs
    // stays and this one is thrown away.
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_dir(&dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => anyhow::bail!("installing {}: {e}", path.display()),
    }
    load(&path)
}

/// Replaces the key pair with a new one: every token signed before stops working at
/// its next Auth (a running server reads the new key at that Auth). Returns the new
/// key id.
pub fn rotate(data_dir: &Path) -> anyhow::Result<String> {
    let dir = keys_dir(data_dir);
    private_dir(&dir)?;
    let tmp = write_new_key(&dir)?;
    let path = key_path(data_dir);
    if let Err(e) = fs::rename(&tmp, &path) {
        let _ = fs::remove_file(&tmp);
        anyhow::bail!("installing {}: {e}", path.display());
    }
    sync_dir(&dir)?;
    Ok(load(&path)?.kid)
}

/// The server's view of the key file: the verifier of the key it last read, read
/// again when the file changes.
pub struct KeyCache {
    path: PathBuf,
    current: Mutex<Option<(Stamp, Arc<Verifier>)>>,
}

/// What identifies one version of the key file.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_ns: i64,
}

impl KeyCache {
    pub fn new(data_dir: &Path) -> KeyCache {
        KeyCache {
            path: key_path(data_dir),
            current: Mutex::new(None),
        }
    }

    /// The verifier of the key file as it is now (one `stat`; a read only if it
    /// changed).
    pub fn current(&self) -> Result<Arc<Verifier>, TokenError> {
        let no_key = |e: String| TokenError::NoKey(e);
        let md = fs::metadata(&self.path)
            .map_err(|e| no_key(format!("{}: {e}", self.path.display())))?;
        let stamp = Stamp {
            dev: md.dev(),
            ino: md.ino(),
            len: md.len(),
            mtime: md.mtime(),
            mtime_ns: md.mtime_nsec(),
        };
        let mut cur = self.current.lock();
        if let Some((s, v)) = cur.as_ref() {
            if *s == stamp {
                return Ok(v.clone());
            }
        }
        let signer = load(&self.path).map_err(|e| no_key(format!("{e:#}")))?;
        let v = Arc::new(signer.verifier());
        tracing::info!(kid = v.kid(), "token key loaded");
        *cur = Some((stamp, v.clone()));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: Option<u64>) -> Claims {
        Claims {
            db: "tenant-*".into(),
            rights: Rights::Write,
            iat: 1_000,
            exp,
        }
    }

    #[test]
    fn durations_parse_strictly() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(2_592_000)));
        for bad in [
            "",
            "s",
            "10",
            "10x",
            "-5m",
            "1.5h",
            "0s",
            "99999999999999d",
            "5 m",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_token_verifies_and_every_kind_of_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let signer = load_or_create(dir.path()).unwrap();
        let v = signer.verifier();
        let t = signer.issue(&claims(Some(2_000)));
        assert_eq!(v.verify(t.as_bytes(), 1_500), Ok(claims(Some(2_000))));
        assert_eq!(v.verify(t.as_bytes(), 2_000), Err(TokenError::Expired));
        // Tampered claims: the signature no longer matches.
        let parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(br#"{"db":"*","rights":"admin","iat":1000}"#);
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(
            v.verify(tampered.as_bytes(), 1_500),
            Err(TokenError::BadSignature)
        );
        // alg none / HS256 are refused before any signature check.
        let none = format!("{}.{}.", B64.encode(br#"{"alg":"none"}"#), forged);
        assert!(matches!(
            v.verify(none.as_bytes(), 1_500),
            Err(TokenError::Malformed(m)) if m.contains("EdDSA")
        ));
        for garbage in ["", "abc", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(
                matches!(
                    v.verify(garbage.as_bytes(), 0),
                    Err(TokenError::Malformed(_))
                ),
                "{garbage}"
            );
        }
        // After rotation the old token names another key.
        rotate(dir.path()).unwrap();
        let v2 = load(&key_path(dir.path())).unwrap().verifier();
        assert_ne!(v2.kid(), v.kid());
        assert_eq!(v2.verify(t.as_bytes(), 1_500), Err(TokenError::OtherKey));
    }

    #[test]
    fn key_files_are_private_and_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let a = load_or_create(&data).unwrap();
        let b = load_or_create(&data).unwrap();
        assert_eq!(a.kid(), b.kid());
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&keys_dir(&data)), 0o700);
        assert_eq!(mode(&key_path(&data)), 0o600);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(keys_dir(&data)).unwrap().count(), 1);
    }

    #[test]
    fn concurrent_issuers_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_path_buf();
        let kids: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create(&data).unwrap().kid().to_string()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(kids.iter().all(|k| *k == kids[0]), "{kids:?}");
    }

    #[test]
    fn the_cache_sees_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let cache = KeyCache::new(dir.path());
        assert!(matches!(cache.current(), Err(TokenError::NoKey(_))));
        let first = load_or_create(dir.path()).unwrap();
        assert_eq!(cache.current().unwrap().kid(), first.kid());
        let new_kid = rotate(dir.path()).unwrap();
        assert_eq!(cache.current().unwrap().kid(), new_kid);
    }
}
