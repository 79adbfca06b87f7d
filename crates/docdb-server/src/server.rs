//! `docdb serve`: bind the socket, accept connections, run the scheduler, and shut
//! down cleanly on SIGINT/SIGTERM: stop accepting, answer every request already
//! received, flush and checkpoint every database, remove the socket, exit 0. A second
//! signal exits at once (acknowledged writes are durable already).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use docdb_core::error::msg;
use docdb_protocol::{encode_response, Response, Status};
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::ServerConfig;
use crate::context::Context;
use crate::pool::Pool;
use crate::scheduler::{Handler, SchedConfig, Scheduler};
use crate::{cmd, connection, http, resources};

/// Runs the server until a signal stops it.
pub fn run(cfg: ServerConfig) -> anyhow::Result<()> {
    cfg.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("docdb-io")
        .build()?;
    rt.block_on(serve(cfg))
}

/// Removes a stale socket file, or fails if a server is listening on it.
fn claim_socket(path: &Path) -> anyhow::Result<()> {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => anyhow::bail!(
            "another server is listening on {}; stop it or choose another --socket",
            path.display()
        ),
        Err(_) if path.exists() => {
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale socket {}", path.display()))?;
            tracing::info!(socket = %path.display(), "replaced a stale socket file");
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

async fn serve(cfg: ServerConfig) -> anyhow::Result<()> {
    claim_socket(&cfg.socket)?;
    let (cfg, fds) = resources::plan(cfg);
    let pool = Pool::open(cfg.clone())
        .with_context(|| format!("opening data directory {}", cfg.data_dir.display()))?;
    let ctx = Arc::new(Context::new(cfg.clone(), pool));
    let weak = Arc::downgrade(&ctx);
    let handler: Arc<Handler> = Arc::new(move |db, tasks| {
        let ctx = weak.upgrade()?;
        cmd::serve_batch(&ctx, db, tasks)
    });
    let sched = Scheduler::new(
        SchedConfig {
            queue_depth: cfg.sched.queue_depth,
            min_workers: cfg.min_workers(),
            max_workers: cfg.sched.max_workers,
            worker_expiry: cfg.sched.worker_expiry,
            prealloc: cfg.sched.prealloc,
            policy: cfg.sched.policy,
            max_batch: cfg.sched.max_batch,
            spin: cfg.sched.spin,
        },
        handler,
    );
    ctx.set_scheduler(sched.clone());
    let weak_sched = Arc::downgrade(&sched);
    ctx.pool.set_busy_check(Box::new(move |db| {
        weak_sched.upgrade().is_some_and(|s| s.has_work(db))
    }));

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut background = JoinSet::new();
    // The HTTP address is bound first: if it fails, no socket file is left behind.
    if let Some(addr) = &cfg.http {
        let fut = http::bind(addr, ctx.clone(), stop_rx.clone()).await?;
        background.spawn(fut);
        tracing::info!(addr = %addr, "http endpoint: /metrics /healthz");
    }
    let listener = UnixListener::bind(&cfg.socket)
        .with_context(|| format!("binding socket {}", cfg.socket.display()))?;
    if let Err(e) = std::fs::set_permissions(
        &cfg.socket,
        std::fs::Permissions::from_mode(cfg.socket_mode),
    ) {
        let _ = std::fs::remove_file(&cfg.socket);
        return Err(e).with_context(|| format!("setting mode of {}", cfg.socket.display()));
    }

    {
        let ctx = ctx.clone();
        let mut stop = stop_rx.clone();
        background.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let c = ctx.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            c.pool.close_idle();
                            background_heal(&c);
                        })
                        .await;
                    }
                    _ = stop.changed() => return,
                }
            }
        });
    }

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    tracing::info!(socket = %cfg.socket.display(), data_dir = %cfg.data_dir.display(),
        policy = cfg.sched.policy.name(), fsync = ?cfg.wal.fsync.mode, "docdb listening");

    let limit = (cfg.max_connections > 0).then(|| Arc::new(Semaphore::new(cfg.max_connections)));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                if fds.short_of_fds(&stream, fds.reserve(ctx.pool.open_count())) {
                    refuse(stream, msg::LOW_ON_FDS);
                    continue;
                }
                let permit = match &limit {
                    None => None,
                    Some(sem) => match sem.clone().try_acquire_owned() {
                        Ok(p) => Some(p),
                        Err(_) => {
                            let why = if fds.capped_by_fds {
                                msg::LOW_ON_FDS
                            } else {
                                msg::TOO_MANY_CONNECTIONS
                            };
                            refuse(stream, why);
                            continue;
                        }
                    },
                };
                let ctx = ctx.clone();
                let stop = stop_rx.clone();
                conns.spawn(async move {
                    connection::serve(stream, ctx, stop).await;
                    drop(permit);
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }

    tracing::info!("shutting down: draining requests");
    tokio::spawn(async move {
        tokio::select! {
            _ = sigterm.recv() => {},
            _ = sigint.recv() => {},
        }
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    drop(listener);
    let _ = stop_tx.send(true);
    // Connections answer what they had read and drain what the clients had sent; one
    // that stalls in the middle of a frame is not waited for forever.
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some connections did not finish within 10 s; closing them");
        conns.shutdown().await;
    }
    let ctx2 = ctx.clone();
    tokio::task::spawn_blocking(move || {
        if !ctx2.scheduler().shutdown(Duration::from_secs(60)) {
            tracing::warn!("scheduler did not drain within 60 s");
        }
        ctx2.pool.shutdown(Duration::from_secs(30));
    })
    .await?;
    background.shutdown().await;
    if let Err(e) = std::fs::remove_file(&cfg.socket) {
        tracing::warn!(error = %e, "removing the socket file");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Runs the background healing scan of every open database whose last scan is older
/// than `healing.interval_secs`.
fn background_heal(ctx: &Context) {
    let every = Duration::from_secs(ctx.cfg.healing.interval_secs);
    for (id, db) in ctx.pool.open_dbs() {
        // The first scan is due one interval after the database was opened.
        let since = db.heal_stats().last_scan_time.unwrap_or(db.opened_at());
        let due = since.elapsed().is_ok_and(|age| age >= every);
        if !due || ctx.pool.is_stopped() {
            continue;
        }
        ctx.metrics.healing_operations.inc();
        match db.heal_scan() {
            Ok(r) => {
                ctx.metrics.documents_healed.inc_by(r.healed.len() as u64);
                tracing::debug!(
                    db = id,
                    scanned = r.scanned,
                    healed = r.healed.len(),
                    "background healing scan"
                );
            }
            Err(e) => tracing::warn!(db = id, error = %e, "background healing scan failed"),
        }
    }
}

/// Tells a client over `max_connections`, or arriving while file descriptors are
/// short, why it is turned away, and closes the connection at once.
fn refuse(stream: tokio::net::UnixStream, why: &'static str) {
    let mut buf = Vec::new();
    encode_response(
        &Response::new(0, Status::Error, why.as_bytes().to_vec()),
        &mut buf,
    );
    // IMPORTANT: no task, no waiting: a burst of refused clients must not hold a
    // descriptor each. A fresh socket's buffer always has room for this one small
    // frame, so a non-blocking write sends it whole.
    let _ = stream.try_write(&buf);
}
