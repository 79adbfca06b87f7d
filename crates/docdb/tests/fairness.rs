#![allow(clippy::unwrap_used)]
//! Fairness (SPEC §6): a quiet database's p99 latency while another database is
//! flooded. One client does sequential reads and writes on `quiet`; 20 client threads
//! flood `hot` with pipelined writes. Measured for each policy; the figures are
//! printed (`--no-capture` to see them) and, for the default `fair` policy,
//! p99 under the flood must stay within 5 x the unloaded p99 + 2 ms; with one worker,
//! `fair` must not starve the quiet database and `deepest` (the control) must.

mod common;
mod support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Client;
use docdb_protocol::Command as Cmd;
use support::*;

const FLOOD_THREADS: u64 = 20;
/// Requests each flood thread keeps in flight.
const WINDOW: u64 = 4;

/// How long each phase lasts. Unloaded and loaded windows alternate, so anything else
/// slowing the machine meanwhile (other tests, the disk) weighs on both alike.
#[derive(Clone, Copy)]
struct Plan {
    rounds: usize,
    unloaded: Duration,
    loaded: Duration,
}

struct Figures {
    policy: &'static str,
    unloaded_p50: Duration,
    unloaded_p99: Duration,
    loaded_p50: Duration,
    loaded_p99: Duration,
    loaded_max: Duration,
    quiet_ops: usize,
    hot_ops_per_sec: f64,
    hot_refused: u64,
}

/// Sequential quiet traffic for `dur`: alternating update and read. Returns latencies.
fn quiet(c: &mut Client, db: u64, dur: Duration, seq: &mut u64, lat: &mut Vec<Duration>) {
    let end = Instant::now() + dur;
    while Instant::now() < end {
        *seq += 1;
        let id = 1 + *seq % 100;
        let t = Instant::now();
        if seq.is_multiple_of(2) {
            let (st, res) = c.execute(db, vec![update_op("", id, &format!(r#"{{"q":{seq}}}"#))]);
            assert_eq!(st, 0, "{:?}", String::from_utf8_lossy(&res[0]));
        } else {
            assert_eq!(c.read(db, "", id).0, 0);
        }
        lat.push(t.elapsed());
    }
}

/// Shared state of the flood threads.
#[derive(Default)]
struct Flood {
    stop: AtomicBool,
    paused: AtomicBool,
    /// When a loaded window ends: the flood pauses by itself then, so that a quiet
    /// request a policy starves (`deepest` with one worker) is served once the flood's
    /// requests are, instead of waiting for the main thread (blocked on that very
    /// request) to pause the flood.
    until: std::sync::Mutex<Option<Instant>>,
    in_flight: AtomicU64,
    done: AtomicU64,
    refused: AtomicU64,
}

/// One flood thread: pipelined writes on `hot`, `WINDOW` in flight, until stopped;
/// while paused (or past `until`) it lets its requests finish and sends no more.
fn flood(sock: std::path::PathBuf, db: u64, t: u64, f: Arc<Flood>) {
    let mut st = UnixStream::connect(&sock).unwrap();
    let (mut sent, mut answered) = (0u64, 0u64);
    let base = (t + 1) << 32;
    let payload = format!(r#"{{"hot":true,"pad":"{}"}}"#, "h".repeat(200));
    loop {
        let stop = f.stop.load(Ordering::Relaxed);
        if stop && answered == sent {
            return;
        }
        let mut batch = Vec::new();
        let over = f.until.lock().unwrap().is_some_and(|u| Instant::now() >= u);
        if !stop && !over && !f.paused.load(Ordering::Relaxed) {
            while sent - answered < WINDOW {
                sent += 1;
                f.in_flight.fetch_add(1, Ordering::Relaxed);
                batch.extend(frame(
                    sent,
                    db,
                    Cmd::Execute as u8,
                    vec![create_op("", base + sent, &payload)],
                ));
            }
            st.write_all(&batch).unwrap();
        }
        if answered == sent {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        match read_reply(&mut st, Instant::now() + Duration::from_secs(30)) {
            Reply::Frame(r) => {
                answered += 1;
                f.in_flight.fetch_sub(1, Ordering::Relaxed);
                if r.status == 0 {
                    f.done.fetch_add(1, Ordering::Relaxed);
                } else {
                    assert_eq!(text(&r), "request queue is full", "{r:?}");
                    f.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
            other => panic!("flood thread {t}: {other:?}"),
        }
    }
}

/// Starts a server with `--policy policy` (and `toml` as its config file if given) and
/// measures the quiet client with the flood paused and running, alternately.
fn measure(policy: &'static str, toml: Option<&str>, plan: Plan) -> Figures {
    let mut s = unstarted(&["--policy", policy]);
    if let Some(t) = toml {
        let cfg = in_dir(&s, "docdb.toml");
        std::fs::write(&cfg, t).unwrap();
        s.extra_args
            .extend(["--config".into(), cfg.display().to_string()]);
    }
    s.spawn();
    let mut c = s.connect();
    let hot = c.open_db("hot");
    let q = c.open_db("quiet");
    let ops = (1..=100).map(|i| create_op("", i, r#"{"q":0}"#)).collect();
    assert_eq!(c.execute(q, ops).0, 0);
    let mut seq = 0;
    quiet(
        &mut c,
        q,
        Duration::from_millis(50),
        &mut seq,
        &mut Vec::new(),
    ); // warm up

    let f = Arc::new(Flood::default());
    f.paused.store(true, Ordering::Relaxed);
    let threads: Vec<_> = (0..FLOOD_THREADS)
        .map(|t| {
            let (sock, f) = (s.socket.clone(), f.clone());
            std::thread::spawn(move || flood(sock, hot, t, f))
        })
        .collect();
    let (mut unloaded, mut loaded) = (Vec::new(), Vec::new());
    let mut hot_time = Duration::ZERO;
    let mut hot_done = 0;
    for _ in 0..plan.rounds {
        // Unloaded: the flood paused and every one of its requests answered.
        f.paused.store(true, Ordering::Relaxed);
        assert!(wait_for(Duration::from_secs(10), || f
            .in_flight
            .load(Ordering::Relaxed)
            == 0));
        quiet(&mut c, q, plan.unloaded, &mut seq, &mut unloaded);
        // Loaded: the flood running at full tilt.
        *f.until.lock().unwrap() = Some(Instant::now() + Duration::from_millis(30) + plan.loaded);
        f.paused.store(false, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(30));
        let (d0, t0) = (f.done.load(Ordering::Relaxed), Instant::now());
        quiet(&mut c, q, plan.loaded, &mut seq, &mut loaded);
        hot_done += f.done.load(Ordering::Relaxed) - d0;
        hot_time += t0.elapsed();
    }
    f.stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    unloaded.sort();
    loaded.sort();
    Figures {
        policy,
        unloaded_p50: percentile(&unloaded, 50.0),
        unloaded_p99: percentile(&unloaded, 99.0),
        loaded_p50: percentile(&loaded, 50.0),
        loaded_p99: percentile(&loaded, 99.0),
        loaded_max: *loaded.last().unwrap(),
        quiet_ops: loaded.len(),
        hot_ops_per_sec: hot_done as f64 / hot_time.as_secs_f64(),
        hot_refused: f.refused.load(Ordering::Relaxed),
    }
}

fn report(setup: &str, f: &Figures) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    eprintln!(
        "fairness [{setup}] policy={:<11} quiet p50/p99 unloaded {:.3}/{:.3} ms | under flood {:.3}/{:.3} ms (max {:.3} ms, {} ops) | p99 ratio {:.1}x | hot {:.0} writes/s, {} refused (queue full)",
        f.policy,
        ms(f.unloaded_p50),
        ms(f.unloaded_p99),
        ms(f.loaded_p50),
        ms(f.loaded_p99),
        ms(f.loaded_max),
        f.quiet_ops,
        f.loaded_p99.as_secs_f64() / f.unloaded_p99.as_secs_f64(),
        f.hot_ops_per_sec,
        f.hot_refused,
    );
}

fn bound(f: &Figures) -> Duration {
    f.unloaded_p99 * 5 + Duration::from_millis(2)
}

#[test]
fn quiet_database_p99_under_a_hot_one() {
    // Default pool: a database being served holds one worker, so the quiet one always
    // finds another; this is what a deployment sees.
    let plan = Plan {
        rounds: 4,
        unloaded: Duration::from_millis(120),
        loaded: Duration::from_millis(220),
    };
    let mut all = Vec::new();
    for policy in ["fair", "deepest", "round_robin"] {
        let f = measure(policy, None, plan);
        report("default pool", &f);
        all.push(f);
    }
    // One worker for everything: the policy alone decides who waits.
    let single_plan = Plan {
        rounds: 3,
        unloaded: Duration::from_millis(80),
        loaded: Duration::from_millis(400),
    };
    let mut single = Vec::new();
    for policy in ["fair", "deepest", "round_robin"] {
        let f = measure(
            policy,
            Some("[sched]\nworkers = 1\nmax_workers = 1\n"),
            single_plan,
        );
        report("1 worker", &f);
        single.push(f);
    }
    let fair = &all[0];
    assert!(
        fair.loaded_p99 <= bound(fair),
        "fair: quiet p99 {:?} under the flood > 5 x {:?} + 2 ms",
        fair.loaded_p99,
        fair.unloaded_p99
    );
    // With a single worker, `fair` still serves the quiet database between two hot
    // batches: no starvation. A starved quiet request waits for the flood to pause,
    // up to a whole loaded window; half a window is far above one hot batch (a few
    // ms unloaded), room for a loaded VM.
    let starved = single_plan.loaded / 2;
    assert!(
        single[0].loaded_p99 <= starved,
        "fair with one worker: quiet p99 {:?} (starvation bound {starved:?})",
        single[0].loaded_p99
    );
    // The control: `deepest` (longest queue first) usually starves the quiet database
    // with one worker (PERFORMANCE.md: p99 385 ms with 160 ms windows; 2.1 s with
    // these), which shows the bound above can fail. Whether it does depends on how fast
    // the flood refills the hot queue between two of its batches (a quiet machine
    // drains it, and deepest then serves the quiet queue), so it is reported, not
    // asserted; the scheduler's unit tests pin deepest's order deterministically.
    if single[1].loaded_p99 <= starved {
        eprintln!(
            "note: deepest with one worker was not starved this run (quiet p99 {:?}, \
             bound {starved:?})",
            single[1].loaded_p99
        );
    }
}
