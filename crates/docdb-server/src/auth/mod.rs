//! Access control (SPEC §9.1): who may do what on a connection.
//!
//! A connection's [`Session`] holds its [`Scope`] (a database-name pattern and
//! [`Rights`]) once it has one (Auth with a token, or the peer's uid under
//! `auth.mode = "peer"`), and the database ids it opened within that scope: a db_id
//! never grants access by itself. What each command needs is one table,
//! [`crate::cmd::need`]; [`Session::check`] is the one place it is enforced.
//!
//! With `auth.mode = "none"` (the default) a session starts unrestricted and nothing
//! is checked, exactly as before; a client may still Auth to narrow itself to a
//! token's scope. A transport that always requires a token (TCP) makes its sessions
//! with [`Session::new`]`(true, ..)` whatever the mode.

pub mod glob;
pub mod token;

use std::collections::HashMap;

use docdb_protocol::{OpType, Request};
use serde::{Deserialize, Serialize};

use self::glob::Glob;
use self::token::{Claims, KeyCache};
use crate::config::{AuthMode, AuthSection};

/// What a scope allows, each level including the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rights {
    Read,
    Write,
    Admin,
}

impl Rights {
    pub fn name(self) -> &'static str {
        match self {
            Rights::Read => "read",
            Rights::Write => "write",
            Rights::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Rights {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Rights::Read),
            "write" => Ok(Rights::Write),
            "admin" => Ok(Rights::Admin),
            _ => Err(format!(
                "unknown rights {s:?} (expected read, write or admin)"
            )),
        }
    }
}

/// What a connection may reach.
#[derive(Debug, Clone)]
pub struct Scope {
    pub db: Glob,
    pub rights: Rights,
    /// Unix seconds; `None`: never. Checked at every request.
    pub expires: Option<u64>,
}

impl Scope {
    pub fn from_claims(c: &Claims) -> Result<Scope, String> {
        Ok(Scope {
            db: Glob::new(&c.db)?,
            rights: c.rights,
            expires: c.exp,
        })
    }

    /// The Auth reply: `{"db": pattern, "rights": ..., "expires": unix_secs|null}`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::json!({
            "db": self.db.as_str(),
            "rights": self.rights.name(),
            "expires": self.expires,
        })
        .to_string()
        .into_bytes()
    }
}

/// What one request needs of the session ([`crate::cmd::need`] says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing (Auth itself).
    Nothing,
    /// A database named by ops[0].payload (OpenDB, DropDB): in the scope's pattern,
    /// with these rights.
    Name(Rights),
    /// The request's db_id, opened by this connection within its scope, with these
    /// rights.
    Db(Rights),
    /// As `Db`: read if every op only reads, else write (Execute, Transaction).
    DbOps,
    /// A server-wide command with these rights (ListDBs: read, filtered to the scope).
    Server(Rights),
}

/// Why a request was refused: the text of a Denied reply.
pub fn denied(detail: impl std::fmt::Display) -> String {
    format!("{}: {detail}", docdb_protocol::text::PERMISSION_DENIED)
}

/// The access state of one connection.
#[derive(Debug)]
pub struct Session {
    /// Every request needs a scope (token or peer mode, or a TCP connection).
    required: bool,
    scope: Option<Scope>,
    /// Why there is no scope, when one is required but none could be given (peer
    /// mode, unknown uid); `None`: `authentication required`.
    refusal: Option<String>,
    /// Database ids this connection opened within its scope, with their names.
    opened: HashMap<u64, String>,
    max_opened: usize,
}

impl Session {
    /// A session that needs a scope for every request (`required`) or none.
    pub fn new(required: bool, max_opened: usize) -> Session {
        Session {
            required,
            scope: None,
            refusal: None,
            opened: HashMap::new(),
            max_opened: max_opened.max(1),
        }
    }

    /// The session of a new Unix-socket connection from a peer of `uid`.
    pub fn for_unix(cfg: &AuthSection, uid: Option<u32>) -> Session {
        let mut s = Session::new(cfg.mode != AuthMode::None, cfg.max_opened);
        if cfg.mode == AuthMode::Peer {
            let entry = uid.and_then(|u| cfg.peer.get(&u.to_string()));
            match (uid, entry) {
                (Some(_), Some(p)) => match Glob::new(&p.db) {
                    Ok(db) => {
                        s.scope = Some(Scope {
                            db,
                            rights: p.rights,
                            expires: None,
                        })
                    }
                    Err(e) => s.refusal = Some(denied(e)),
                },
                (Some(u), None) => {
                    s.refusal = Some(denied(format!("uid {u} has no [auth.peer] entry")))
                }
                (None, _) => s.refusal = Some(denied("the peer's uid is unknown")),
            }
        }
        s
    }

    pub fn scope(&self) -> Option<&Scope> {
        self.scope.as_ref()
    }

    /// Whether every request is let through unchecked (mode none, no Auth yet).
    pub fn unrestricted(&self) -> bool {
        !self.required && self.scope.is_none()
    }

    /// Binds `scope` (a successful Auth), replacing any earlier one. Ids opened
    /// before stay usable only if their names are in the new scope.
    pub fn bind(&mut self, scope: Scope) {
        self.opened.retain(|_, name| scope.db.matches(name));
        self.scope = Some(scope);
        self.refusal = None;
    }

    /// Whether the session lets `req` through; the error is the Denied text.
    pub fn check(&self, req: &Request, need: Need, now: u64) -> Result<(), String> {
        if need == Need::Nothing || self.unrestricted() {
            return Ok(());
        }
        let Some(scope) = &self.scope else {
            return Err(self
                .refusal
                .clone()
                .unwrap_or_else(|| docdb_protocol::text::AUTH_REQUIRED.to_string()));
        };
        if scope.expires.is_some_and(|e| e <= now) {
            return Err(denied("token expired"));
        }
        let rights = match need {
            Need::Nothing => return Ok(()),
            Need::Name(r) => {
                let name = req
                    .ops
                    .first()
                    .map(|op| String::from_utf8_lossy(&op.payload))
                    .unwrap_or_default();
                if !scope.db.matches(&name) {
                    return Err(denied(format!(
                        "database {name:?} is outside this connection's scope {:?}",
                        scope.db.as_str()
                    )));
                }
                r
            }
            Need::Db(r) => {
                self.check_db(req.db_id)?;
                r
            }
            Need::DbOps => {
                self.check_db(req.db_id)?;
                if req
                    .ops
                    .iter()
                    .all(|op| OpType::from_u8(op.op_type) == Some(OpType::Read))
                {
                    Rights::Read
                } else {
                    Rights::Write
                }
            }
            Need::Server(r) => r,
        };
        if scope.rights < rights {
            let cmd = docdb_protocol::Command::from_u8(req.command)
                .map(|c| c.name())
                .unwrap_or("this command");
            return Err(denied(format!(
                "{cmd} needs {} rights; this connection has {}",
                rights.name(),
                scope.rights.name()
            )));
        }
        Ok(())
    }

    fn check_db(&self, db_id: u64) -> Result<(), String> {
        if self.opened.contains_key(&db_id) {
            Ok(())
        } else {
            Err(denied(format!(
                "database id {db_id} was not opened by this connection"
            )))
        }
    }

    /// Whether database `name` may be opened (the set is bounded by
    /// `auth.max_opened`; a name this connection holds already is not one more);
    /// the error is the Denied text.
    pub fn may_open(&self, name: &str) -> Result<(), String> {
        if self.unrestricted()
            || self.opened.len() < self.max_opened
            || self.opened.values().any(|n| n == name)
        {
            Ok(())
        } else {
            Err(denied(format!(
                "this connection has {} databases open (auth.max_opened); close one first",
                self.max_opened
            )))
        }
    }

    /// Records a database this connection opened (nothing when unrestricted). An
    /// older id of the same name (dropped and made anew since) is forgotten: it
    /// names no database any more, and must not count against `max_opened`.
    pub fn opened(&mut self, id: u64, name: &str) {
        if !self.unrestricted() {
            self.opened.retain(|&old, n| old == id || n != name);
            self.opened.insert(id, name.to_string());
        }
    }

    /// Forgets a database this connection closed.
    pub fn closed(&mut self, id: u64) {
        self.opened.remove(&id);
    }
}

/// The server's access control: its configuration and the token key.
pub struct Auth {
    pub cfg: AuthSection,
    pub keys: KeyCache,
}

impl Auth {
    pub fn new(cfg: AuthSection, data_dir: &std::path::Path) -> Auth {
        Auth {
            cfg,
            keys: KeyCache::new(data_dir),
        }
    }

    /// Checks `token` and returns the scope it grants; the error is the Denied text.
    pub fn authenticate(&self, token: &[u8], now: u64) -> Result<Scope, String> {
        let v = self.keys.current().map_err(denied)?;
        let claims = v.verify(token, now).map_err(denied)?;
        Scope::from_claims(&claims).map_err(denied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use docdb_protocol::Op;

    fn req(command: u8, db_id: u64, ops: &[(u8, &str)]) -> Request {
        Request {
            request_id: 1,
            db_id,
            command,
            ops: ops
                .iter()
                .map(|&(t, payload)| Op {
                    op_type: t,
                    payload: payload.as_bytes().to_vec(),
                    ..Op::default()
                })
                .collect(),
        }
    }

    fn scoped(db: &str, rights: Rights) -> Session {
        let mut s = Session::new(true, 2);
        s.bind(Scope {
            db: Glob::new(db).unwrap(),
            rights,
            expires: None,
        });
        s
    }

    #[test]
    fn a_required_session_without_scope_refuses_everything_but_auth() {
        let s = Session::new(true, 8);
        let r = req(1, 0, &[(0, "x")]);
        assert_eq!(
            s.check(&r, Need::Name(Rights::Read), 0).unwrap_err(),
            "authentication required"
        );
        assert!(s.check(&r, Need::Nothing, 0).is_ok());
        assert!(Session::new(false, 8)
            .check(&r, Need::Server(Rights::Admin), 0)
            .is_ok());
    }

    #[test]
    fn names_ids_and_rights_are_checked() {
        let mut s = scoped("t-*", Rights::Read);
        assert!(s
            .check(&req(1, 0, &[(0, "t-1")]), Need::Name(Rights::Read), 0)
            .is_ok());
        let e = s
            .check(&req(1, 0, &[(0, "u-1")]), Need::Name(Rights::Read), 0)
            .unwrap_err();
        assert!(e.starts_with("permission denied: database \"u-1\""), "{e}");
        let read = req(3, 7, &[(2, "")]);
        let write = req(3, 7, &[(2, ""), (1, "{}")]);
        assert!(s
            .check(&read, Need::DbOps, 0)
            .unwrap_err()
            .contains("not opened"));
        s.opened(7, "t-1");
        assert!(s.check(&read, Need::DbOps, 0).is_ok());
        let e = s.check(&write, Need::DbOps, 0).unwrap_err();
        assert!(
            e.contains("execute needs write rights; this connection has read"),
            "{e}"
        );
        assert!(s
            .check(&req(4, 0, &[]), Need::Server(Rights::Admin), 0)
            .is_err());
        s.closed(7);
        assert!(s.check(&read, Need::DbOps, 0).is_err());
    }

    #[test]
    fn a_new_scope_keeps_only_the_ids_it_covers_and_expiry_is_checked() {
        let mut s = scoped("*", Rights::Admin);
        s.opened(1, "a");
        s.opened(2, "b");
        assert!(s.may_open("c").is_err(), "bounded by max_opened");
        // A name held already is not one more; its new id replaces the old.
        assert!(s.may_open("a").is_ok());
        s.opened(3, "a");
        assert!(s.may_open("c").is_err());
        assert!(s.check(&req(7, 1, &[]), Need::Db(Rights::Read), 0).is_err());
        s.opened(1, "a");
        s.bind(Scope {
            db: Glob::new("a").unwrap(),
            rights: Rights::Write,
            expires: Some(100),
        });
        assert!(s.check(&req(7, 1, &[]), Need::Db(Rights::Read), 99).is_ok());
        assert!(s
            .check(&req(7, 2, &[]), Need::Db(Rights::Read), 99)
            .is_err());
        assert_eq!(
            s.check(&req(7, 1, &[]), Need::Db(Rights::Read), 100)
                .unwrap_err(),
            "permission denied: token expired"
        );
    }
}
