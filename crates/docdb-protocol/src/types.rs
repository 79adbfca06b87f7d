//! Numeric codes of the protocol.

/// Declares [`Command`] from one list of `code => Variant, "name"`, so a new command is
/// one line here (and one entry in the server's command table).
macro_rules! commands {
    ($($code:literal => $variant:ident, $name:literal;)*) => {
        /// Commands (the request frame's `command` byte).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Command {
            $($variant = $code,)*
        }

        impl Command {
            /// Every command, in code order.
            pub const ALL: &'static [Command] = &[$(Command::$variant,)*];

            pub fn from_u8(b: u8) -> Option<Command> {
                match b {
                    $($code => Some(Command::$variant),)*
                    _ => None,
                }
            }

            /// Lower-case name, for metrics labels and logs.
            pub fn name(self) -> &'static str {
                match self {
                    $(Command::$variant => $name,)*
                }
            }
        }
    };
}

commands! {
    1 => OpenDb, "open_db";
    2 => CloseDb, "close_db";
    3 => Execute, "execute";
    4 => Stats, "stats";
    5 => CreateCollection, "create_collection";
    6 => DeleteCollection, "delete_collection";
    7 => ListCollections, "list_collections";
    8 => ListDbs, "list_dbs";
    9 => Heal, "heal";
    10 => HealAll, "heal_all";
    11 => HealStats, "heal_stats";
    12 => Metrics, "metrics";
    13 => Transaction, "transaction";
    14 => SchedulerStats, "scheduler_stats";
    15 => Scan, "scan";
    16 => Auth, "auth";
    17 => DropDb, "drop_db";
    18 => Query, "query";
    19 => CreateIndex, "create_index";
    20 => DropIndex, "drop_index";
    21 => ListIndexes, "list_indexes";
}

/// Flag bit of the command byte: set on Execute (3) or Transaction (13), it asks for the
/// reply in the per-op status form (docs/PROTOCOL.md, "Per-op statuses"): status OK
/// whenever the ops ran, data `u32 n`, then per op `u8 status, u32 len, bytes`. A v0.3
/// client never sets it (its commands are 1–12), and no command code reaches it (codes
/// stay below 128), so the flagged bytes 131 and 141 cannot collide with a command.
/// On any other command the byte is an unknown command.
pub const PER_OP_STATUS: u8 = 0x80;

impl Command {
    /// The command of a request's command byte and whether it carries
    /// [`PER_OP_STATUS`]; `None` for an unknown byte, including the flag on a command
    /// other than Execute and Transaction.
    pub fn decode(b: u8) -> Option<(Command, bool)> {
        if b & PER_OP_STATUS == 0 {
            return Command::from_u8(b).map(|c| (c, false));
        }
        match Command::from_u8(b & !PER_OP_STATUS)? {
            c @ (Command::Execute | Command::Transaction) => Some((c, true)),
            _ => None,
        }
    }
}

/// Operation types inside Execute and Transaction. Codes 5 (commit), 6 (checkpoint),
/// 8 and 9 (collection create/delete) are reserved for WAL records and rejected in
/// requests with `unknown operation type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpType {
    Create = 1,
    Read = 2,
    Update = 3,
    Delete = 4,
    Patch = 7,
}

impl OpType {
    pub fn from_u8(b: u8) -> Option<OpType> {
        Some(match b {
            1 => OpType::Create,
            2 => OpType::Read,
            3 => OpType::Update,
            4 => OpType::Delete,
            7 => OpType::Patch,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            OpType::Create => "create",
            OpType::Read => "read",
            OpType::Update => "update",
            OpType::Delete => "delete",
            OpType::Patch => "patch",
        }
    }
}

/// Response status. New codes are only ever added at 5 and above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    Error = 1,
    NotFound = 2,
    Conflict = 3,
    MemoryLimit = 4,
    /// Refused by access control (SPEC §8.1): `authentication required` or
    /// `permission denied: <detail>`.
    Denied = 5,
}

impl Status {
    pub fn from_u8(b: u8) -> Option<Status> {
        Some(match b {
            0 => Status::Ok,
            1 => Status::Error,
            2 => Status::NotFound,
            3 => Status::Conflict,
            4 => Status::MemoryLimit,
            5 => Status::Denied,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::NotFound => "not_found",
            Status::Conflict => "conflict",
            Status::MemoryLimit => "memory_limit",
            Status::Denied => "denied",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_reserved_ops_are_unknown() {
        for b in 0..=255u8 {
            if let Some(c) = Command::from_u8(b) {
                assert_eq!(c as u8, b);
            }
            if let Some(o) = OpType::from_u8(b) {
                assert_eq!(o as u8, b);
            }
            if let Some(s) = Status::from_u8(b) {
                assert_eq!(s as u8, b);
            }
        }
        for reserved in [5u8, 6, 8, 9, 0, 10] {
            assert_eq!(OpType::from_u8(reserved), None);
        }
        assert_eq!(Command::from_u8(22), None);
        assert_eq!(Command::ALL.len(), 21);
        assert_eq!(Command::from_u8(21), Some(Command::ListIndexes));
        assert_eq!(Command::from_u8(16), Some(Command::Auth));
        assert_eq!(Command::from_u8(17), Some(Command::DropDb));
        assert_eq!(Command::from_u8(18), Some(Command::Query));
        assert_eq!(Command::Scan.name(), "scan");
        assert_eq!(Command::from_u8(0), None);
    }

    #[test]
    fn the_per_op_status_flag_is_valid_on_execute_and_transaction_only() {
        assert_eq!(Command::decode(3), Some((Command::Execute, false)));
        assert_eq!(Command::decode(131), Some((Command::Execute, true)));
        assert_eq!(Command::decode(141), Some((Command::Transaction, true)));
        for b in 0..=255u8 {
            if b & PER_OP_STATUS != 0 && b != 131 && b != 141 {
                assert_eq!(Command::decode(b), None, "{b}");
            }
            // Every command code leaves the flag bit free.
            if let Some(c) = Command::from_u8(b) {
                assert_eq!(c as u8 & PER_OP_STATUS, 0);
            }
        }
    }
}
