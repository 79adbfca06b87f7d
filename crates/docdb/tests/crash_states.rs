#![allow(clippy::unwrap_used, clippy::expect_used)]
//! kill -9 in the middle of a compaction, a WAL roll or a WAL trim, each state built on
//! purpose (issue 15) instead of hoping `crash.rs`'s random kills land there.
//!
//! A crash keeps the page cache, so the files a SIGKILL leaves are exactly the files
//! on disk at that instant. The test builds a database with the engine, copying the
//! whole server data directory at quiescent points (before a compaction, right after
//! it, after a checkpoint that trimmed the WAL), then assembles, for each crash point
//! that `maintenance.rs` and `wal/writer.rs` can be interrupted at, the files it would
//! leave: a copy of one image plus the leftover of the interrupted step. For each state:
//! - `docdb check` exits 0 before recovery (what an operator runs first after a crash);
//! - the server starts, and every acknowledged write is there with its exact bytes,
//!   every acknowledged delete absent, nothing else (a full scan of each collection);
//! - after a clean stop the leftover is gone (a finished compaction's old generation,
//!   an unrecorded new one, a half-written temp file, a `CHECKPOINT.tmp`, WAL segments
//!   the checkpoint no longer needs), and `docdb check` is clean again.
//!
//! `docdb check` before recovery is clean in every state (an interrupted WAL roll is a
//! note, like a torn last record).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{run_docdb, Server};
use docdb_core::{Config, Database, FsyncMode};

const DB: &str = "crashy";
const SIDE: &str = "side";

/// The server's view of the same tuning the engine builds with (1 MiB segments; no
/// retained segments, so a trimmed one must really go; no automatic compaction).
const SERVER_CONFIG: &str = "\
[wal]
max_file_size_mb = 1
keep_segments = 0
[checkpoint]
interval_mb = 1024
[compaction]
size_mb = 1024
";

fn engine_config() -> Config {
    let mut c = Config::default();
    c.wal.max_file_size_mb = 1;
    c.wal.keep_segments = 0;
    // The images are copies of the files, not of what reached the platter: fsyncs
    // would only slow the build down.
    c.wal.fsync.mode = FsyncMode::None;
    c.checkpoint.interval_mb = 1024;
    c.compaction.size_mb = 1024;
    c
}

/// Acknowledged state: (collection, id) -> exact bytes.
type Model = BTreeMap<(String, u64), Vec<u8>>;

fn doc(id: u64, v: u64) -> Vec<u8> {
    let c = char::from(b'a' + ((id * 7 + v) % 26) as u8);
    format!(
        r#"{{"id":{id},"v":{v},"pad":"{}"}}"#,
        c.to_string().repeat(1200)
    )
    .into_bytes()
}

fn put(db: &Database, m: &mut Model, coll: &str, id: u64, v: u64) {
    let bytes = doc(id, v);
    let key = (coll.to_string(), id);
    if m.contains_key(&key) {
        db.update(coll, id, &bytes).unwrap();
    } else {
        db.create(coll, id, &bytes).unwrap();
    }
    m.insert(key, bytes);
}

fn del(db: &Database, m: &mut Model, coll: &str, id: u64) {
    db.delete(coll, id).unwrap();
    m.remove(&(coll.to_string(), id));
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn data_file(db_dir: &Path, g: u64) -> PathBuf {
    db_dir.join("data").join(format!("{g:020}.data"))
}

fn segment(db_dir: &Path, n: u64) -> PathBuf {
    db_dir.join("wal").join(format!("{n:020}.wal"))
}

/// Numbers of the `<n>.wal` segments, oldest first.
fn segments(db_dir: &Path) -> Vec<u64> {
    names(&db_dir.join("wal"))
        .iter()
        .filter_map(|n| n.strip_suffix(".wal")?.parse().ok())
        .collect()
}

/// Generations of the `<g>.data` files.
fn generations(db_dir: &Path) -> Vec<u64> {
    names(&db_dir.join("data"))
        .iter()
        .filter_map(|n| n.strip_suffix(".data")?.parse().ok())
        .collect()
}

/// `docdb check` on a stopped data dir: must exit 0 and report no corrupt database.
fn assert_check_clean(data_dir: &Path, what: &str) {
    let out = run_docdb(&["check", "--data-dir", data_dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !stdout.contains("CORRUPT"),
        "{what}: docdb check is not clean ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The images a crash can combine: copies of the whole server data dir.
struct Images {
    _tmp: tempfile::TempDir,
    /// Checkpointed, then more writes in the WAL only; data generation `g`.
    before_compaction: PathBuf,
    model_before: Model,
    /// Right after `compact()` returned: generation `g + 1` recorded, `g` deleted.
    compacted: PathBuf,
    /// After more writes and a checkpoint that trimmed every segment before its own.
    trimmed: PathBuf,
    model_trimmed: Model,
    g: u64,
}

fn build_images() -> Images {
    // A server makes the catalog and the database's directory, as in production.
    let mut s = Server::start_with_config(SERVER_CONFIG, &[]);
    let mut c = s.connect();
    let id = c.open_db(DB);
    let (st, _) = c.create(id, "_default", 1, std::str::from_utf8(&doc(1, 0)).unwrap());
    assert_eq!(st, 0);
    drop(c);
    s.stop();
    let tmp = tempfile::tempdir().unwrap();
    let image = |name: &str| -> PathBuf {
        let p = tmp.path().join(name);
        copy_tree(&s.data_dir(), &p);
        p
    };

    let dir = s.db_dir(DB);
    let db = Database::open(&dir, engine_config()).unwrap();
    let mut m = Model::new();
    m.insert(("_default".into(), 1), doc(1, 0));
    db.create_collection(SIDE).unwrap();
    // ~1.3 KiB documents: 2,400 writes are about three 1 MiB segments.
    for id in 2..1200 {
        put(&db, &mut m, "_default", id, 0);
    }
    for id in (2..1200).step_by(3) {
        del(&db, &mut m, "_default", id);
    }
    for id in 0..200 {
        put(&db, &mut m, SIDE, id, 0);
    }
    db.checkpoint().unwrap();
    // Writes after the checkpoint: only the WAL vouches for them at a crash.
    for id in (3..1200).step_by(3) {
        put(&db, &mut m, "_default", id, 1);
    }
    for id in 0..50 {
        del(&db, &mut m, SIDE, id);
    }
    let gens = generations(&dir);
    assert_eq!(gens.len(), 1, "{gens:?}");
    let g = gens[0];
    let before_compaction = image("before_compaction");
    let model_before = m.clone();

    assert!(
        db.compact().unwrap() > 0,
        "the compaction reclaimed nothing"
    );
    assert_eq!(generations(&dir), vec![g + 1]);
    let compacted = image("compacted");

    for id in 1200..1800 {
        put(&db, &mut m, "_default", id, 2);
    }
    for id in 50..100 {
        put(&db, &mut m, SIDE, id, 3);
    }
    db.checkpoint().unwrap();
    let trimmed = image("trimmed");
    assert!(
        segments(&compacted.join("dbs").join(DB)).first() < segments(&dir).first(),
        "the checkpoint trimmed no segment"
    );
    drop(db);
    Images {
        _tmp: tmp,
        before_compaction,
        model_before,
        compacted,
        trimmed,
        model_trimmed: m,
        g,
    }
}

/// A crash state: `image` plus whatever `leave` adds to the database's directory.
/// Checks it before and after recovery; `after` inspects the directory once the
/// server has recovered it, taken one more write and stopped cleanly.
fn check_state(
    what: &str,
    check_before: bool,
    image: &Path,
    model: &Model,
    leave: impl FnOnce(&Path),
    after: impl FnOnce(&Path),
) {
    let mut s = Server::unstarted(&[]);
    std::fs::write(s.config_path(), SERVER_CONFIG).unwrap();
    let cfg = s.config_path().display().to_string();
    s.extra_args = vec!["--config".into(), cfg];
    copy_tree(image, &s.data_dir());
    let dir = s.db_dir(DB);
    leave(&dir);
    if check_before {
        assert_check_clean(&s.data_dir(), &format!("{what}, before recovery"));
    }

    s.spawn();
    let mut c = s.connect();
    let id = c.open_db(DB);
    for coll in ["_default", SIDE] {
        let want: Vec<(u64, serde_json::Value)> = model
            .iter()
            .filter(|((c, _), _)| c == coll)
            .map(|((_, i), b)| (*i, serde_json::from_slice(b).unwrap()))
            .collect();
        let got = c.scan_all(id, coll);
        let missing: Vec<u64> = want
            .iter()
            .filter(|w| !got.contains(w))
            .map(|w| w.0)
            .collect();
        let extra: Vec<u64> = got
            .iter()
            .filter(|g| !want.contains(g))
            .map(|g| g.0)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{what}: {coll}: {} acknowledged documents missing or stale (first {:?}), {} unexpected (first {:?})",
            missing.len(),
            missing.first(),
            extra.len(),
            extra.first()
        );
    }
    // One more write, so the clean stop's checkpoint has something to record (and
    // trims what the new checkpoint no longer needs).
    let (st, _) = c.create(id, SIDE, 999_999, r#"{"after":"recovery"}"#);
    assert_eq!(st, 0, "{what}: a write after recovery failed");
    drop(c);
    s.stop();
    after(&dir);
    assert_check_clean(&s.data_dir(), &format!("{what}, after recovery"));
}

#[test]
fn a_crash_at_each_step_of_compaction_wal_roll_and_trim_recovers_every_acknowledged_write() {
    let im = build_images();
    let g = im.g;
    let before_dir = im.before_compaction.join("dbs").join(DB);
    let compacted_dir = im.compacted.join("dbs").join(DB);
    let new_file = std::fs::read(data_file(&compacted_dir, g + 1)).unwrap();
    let old_file = std::fs::read(data_file(&before_dir, g)).unwrap();
    let only_gen = |want: u64| {
        move |dir: &Path| {
            let files = names(&dir.join("data"));
            assert_eq!(
                files,
                vec![format!("{want:020}.data")],
                "leftover files in data/"
            );
        }
    };

    // 1. Killed during the bulk copy: a half-written `<g+1>.data.tmp`.
    check_state(
        "compaction: temp file half written",
        true,
        &im.before_compaction,
        &im.model_before,
        |d| {
            let mut p = data_file(d, g + 1).into_os_string();
            p.push(".tmp");
            std::fs::write(p, &new_file[..new_file.len() / 2]).unwrap();
        },
        only_gen(g),
    );

    // 2. Killed after the rename, before the checkpoint named the new generation: two
    //    generations on disk, the checkpoint still naming the old one.
    check_state(
        "compaction: renamed, not recorded",
        true,
        &im.before_compaction,
        &im.model_before,
        |d| std::fs::write(data_file(d, g + 1), &new_file).unwrap(),
        only_gen(g),
    );

    // 3. Killed while storing that checkpoint: its temp file complete, not renamed.
    check_state(
        "compaction: checkpoint written to CHECKPOINT.tmp, not renamed",
        true,
        &im.before_compaction,
        &im.model_before,
        |d| {
            std::fs::write(data_file(d, g + 1), &new_file).unwrap();
            let ckpt = std::fs::read(compacted_dir.join("CHECKPOINT")).unwrap();
            std::fs::write(d.join("CHECKPOINT.tmp"), ckpt).unwrap();
        },
        |d| {
            only_gen(g)(d);
            assert!(!d.join("CHECKPOINT.tmp").exists(), "CHECKPOINT.tmp left");
        },
    );

    // 4. Killed after the checkpoint named the new generation, before the old file
    //    was deleted: two generations, the checkpoint naming the new one.
    check_state(
        "compaction: recorded, old generation not deleted",
        true,
        &im.compacted,
        &im.model_before,
        |d| std::fs::write(data_file(d, g), &old_file).unwrap(),
        only_gen(g + 1),
    );

    // 5. Killed in a WAL roll, after the next segment was created and before its
    //    header was written (an empty file), and with half a header.
    let last = *segments(&before_dir).last().unwrap();
    for (what, bytes) in [
        ("wal roll: next segment empty", &b""[..]),
        (
            "wal roll: next segment with half a header",
            &b"DOCDBWAL\x01\x00"[..],
        ),
    ] {
        check_state(
            what,
            true,
            &im.before_compaction,
            &im.model_before,
            |d| std::fs::write(segment(d, last + 1), bytes).unwrap(),
            |_| {},
        );
    }

    // 6. Killed after the checkpoint was stored, before (or while) the WAL segments it
    //    no longer needs were deleted: all of them left, or the newest ones (the trim
    //    deletes oldest first).
    let trimmed_dir = im.trimmed.join("dbs").join(DB);
    let first_kept = segments(&trimmed_dir)[0];
    let stale: Vec<u64> = segments(&compacted_dir)
        .into_iter()
        .filter(|&n| n < first_kept)
        .collect();
    assert!(!stale.is_empty());
    for (what, leave) in [
        ("wal trim: not started", &stale[..]),
        ("wal trim: half done", &stale[stale.len() / 2..]),
    ] {
        check_state(
            what,
            true,
            &im.trimmed,
            &im.model_trimmed,
            |d| {
                for &n in leave {
                    std::fs::copy(segment(&compacted_dir, n), segment(d, n)).unwrap();
                }
            },
            |d| {
                let left: Vec<u64> = segments(d)
                    .into_iter()
                    .filter(|n| stale.contains(n))
                    .collect();
                assert!(left.is_empty(), "{what}: segments {left:?} never trimmed");
            },
        );
    }
}

/// A kill between creating the next WAL segment and writing its header leaves an empty
/// (or short) last segment. Recovery handles it (nothing was ever written there; see
/// the test above), and `docdb check` run first, as an operator would after a crash,
/// calls it clean with a note, as it does a torn last record (it used to say CORRUPT).
#[test]
fn docdb_check_calls_an_interrupted_wal_roll_clean() {
    let im = build_images();
    let before_dir = im.before_compaction.join("dbs").join(DB);
    let last = *segments(&before_dir).last().unwrap();
    check_state(
        "wal roll: next segment empty",
        true,
        &im.before_compaction,
        &im.model_before,
        |d| std::fs::write(segment(d, last + 1), b"").unwrap(),
        |_| {},
    );
}
