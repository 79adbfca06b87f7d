//! Numeric codes of the protocol.

/// Commands (the request frame's `command` byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    OpenDb = 1,
    CloseDb = 2,
    Execute = 3,
    Stats = 4,
    CreateCollection = 5,
    DeleteCollection = 6,
    ListCollections = 7,
    ListDbs = 8,
    Heal = 9,
    HealAll = 10,
    HealStats = 11,
    Metrics = 12,
    Transaction = 13,
    SchedulerStats = 14,
    Scan = 15,
}

impl Command {
    pub fn from_u8(b: u8) -> Option<Command> {
        use Command::*;
        Some(match b {
            1 => OpenDb,
            2 => CloseDb,
            3 => Execute,
            4 => Stats,
            5 => CreateCollection,
            6 => DeleteCollection,
            7 => ListCollections,
            8 => ListDbs,
            9 => Heal,
            10 => HealAll,
            11 => HealStats,
            12 => Metrics,
            13 => Transaction,
            14 => SchedulerStats,
            15 => Scan,
            _ => return None,
        })
    }

    /// Lower-case name, for metrics labels and logs.
    pub fn name(self) -> &'static str {
        use Command::*;
        match self {
            OpenDb => "open_db",
            CloseDb => "close_db",
            Execute => "execute",
            Stats => "stats",
            CreateCollection => "create_collection",
            DeleteCollection => "delete_collection",
            ListCollections => "list_collections",
            ListDbs => "list_dbs",
            Heal => "heal",
            HealAll => "heal_all",
            HealStats => "heal_stats",
            Metrics => "metrics",
            Transaction => "transaction",
            SchedulerStats => "scheduler_stats",
            Scan => "scan",
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
}

impl Status {
    pub fn from_u8(b: u8) -> Option<Status> {
        Some(match b {
            0 => Status::Ok,
            1 => Status::Error,
            2 => Status::NotFound,
            3 => Status::Conflict,
            4 => Status::MemoryLimit,
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
        assert_eq!(Command::from_u8(16), None);
        assert_eq!(Command::from_u8(0), None);
    }
}
