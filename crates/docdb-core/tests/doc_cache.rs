#![allow(clippy::unwrap_used)]

//! One read cache shared by several databases (`OpenOptions::cache`, as the server
//! shares one between all its databases): the databases' documents have the same
//! collections, ids and commit sequence numbers, and each is served only its own.

use std::sync::Arc;

use docdb_core::{Config, Database, DocCache, OpenOptions};

fn open(dir: &std::path::Path, cache: &Arc<DocCache>) -> Database {
    let opts = OpenOptions {
        cache: Some(cache.clone()),
        ..OpenOptions::default()
    };
    Database::open_with(dir, Config::default(), opts).unwrap()
}

fn doc(tenant: &str, id: u64) -> Vec<u8> {
    format!(r#"{{"tenant":"{tenant}","id":{id}}}"#).into_bytes()
}

#[test]
fn databases_sharing_a_cache_are_served_their_own_bytes() {
    let d = tempfile::tempdir().unwrap();
    let cache = Arc::new(DocCache::new(1 << 20));
    let a = open(&d.path().join("a"), &cache);
    let b = open(&d.path().join("b"), &cache);
    // The same writes in the same order: the same ids at the same sequence numbers.
    for id in 1..=20 {
        a.create("_default", id, &doc("a", id)).unwrap();
        b.create("_default", id, &doc("b", id)).unwrap();
    }
    for _ in 0..3 {
        for id in 1..=20 {
            assert_eq!(a.read("_default", id).unwrap(), doc("a", id));
            assert_eq!(b.read("_default", id).unwrap(), doc("b", id));
        }
    }
    let st = cache.stats();
    assert_eq!((st.entries, st.misses), (40, 40), "{st:?}");
    assert_eq!(st.hits, 80, "{st:?}");

    // A database removed and made again at the same place, with the same writes,
    // counts its sequence numbers from the start again: its reads must not find the
    // old one's bytes.
    a.close().unwrap();
    std::fs::remove_dir_all(d.path().join("a")).unwrap();
    let a = open(&d.path().join("a"), &cache);
    for id in 1..=20 {
        a.create("_default", id, &doc("a2", id)).unwrap();
    }
    for id in 1..=20 {
        assert_eq!(a.read("_default", id).unwrap(), doc("a2", id));
        assert_eq!(b.read("_default", id).unwrap(), doc("b", id));
    }
}
