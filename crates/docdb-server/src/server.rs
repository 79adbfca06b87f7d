//! `docdb serve`: bind the socket, accept connections, run the scheduler, and shut
//! down cleanly on SIGINT/SIGTERM: stop accepting, answer every request already
//! received, flush and checkpoint every database, remove the socket, exit 0. A second
//! signal exits at once (acknowledged writes are durable already).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use docdb_protocol::{encode_response, text as msg, Response, Status};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::ServerConfig;
use crate::context::Context;
use crate::global_pool::GlobalPool;
use crate::pool::Pool;
use crate::scheduler::{Handler, Scheduler};
use crate::{cmd, connection, healing, http, resources, tls};

/// Runs the server until a signal stops it.
pub fn run(cfg: ServerConfig) -> anyhow::Result<()> {
    cfg.validate()?;
    // A write past the file-size limit (`ulimit -f`) must fail that one database's
    // write with EFBIG, not kill every tenant's server with SIGXFSZ.
    // SAFETY: sets a signal's disposition to "ignore" before any thread is started; no
    // handler runs, nothing is shared.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    disable_huge_pages();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("docdb-io")
        .build()?;
    rt.block_on(serve(cfg))
}

/// Turns transparent huge pages off for this process (Linux `PR_SET_THP_DISABLE`),
/// as Redis and MongoDB advise: the first touch of a huge page zeroes 2 MiB in the
/// faulting thread — a request's latency — and with an allocator that asks for huge
/// pages (mimalloc does, where the system allows them on request) a fifth of the
/// server's CPU went to zeroing pages at 200 × 1 (DECISIONS 77). Where the kernel
/// refuses, the server runs on, with a warning.
fn disable_huge_pages() {
    // SAFETY: prctl with an integer option and integer arguments; no memory is passed.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(),
            "could not turn transparent huge pages off for this process");
    }
}

/// Makes `path` free for our socket: fine if absent; a socket nobody answers on (left
/// by a server that died) is removed. Anything else refuses, and is left untouched: a
/// socket a server answers on, and any non-socket (a typo in `--socket` must not
/// delete a file).
fn claim_socket(path: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("inspecting --socket {}", path.display())),
    };
    let ft = meta.file_type();
    if !ft.is_socket() {
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_symlink() {
            "a symbolic link"
        } else if ft.is_file() {
            "a regular file"
        } else {
            "not a socket"
        };
        anyhow::bail!(
            "--socket {} exists and is {what}; refusing to replace it (remove it or choose another path)",
            path.display()
        );
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => anyhow::bail!(
            "another server is listening on {}; stop it or choose another --socket",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale socket {}", path.display()))?;
            tracing::info!(socket = %path.display(), "replaced a stale socket file");
            Ok(())
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "--socket {} is a socket that cannot be checked",
                path.display()
            )
        }),
    }
}

/// Binds the socket with its final mode already set, so it is never reachable with a
/// wider one: bind inside a fresh 0700 directory next to `path`, set the mode, then
/// hard-link it into place (which, unlike rename, fails rather than replace anything
/// that appeared at `path` meanwhile) and remove the temporary name.
fn bind_private(path: &Path, mode: u32) -> anyhow::Result<std::os::unix::net::UnixListener> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp_dir = tempfile::Builder::new()
        .prefix(".docdb-socket-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)
        .with_context(|| format!("making a private directory in {}", parent.display()))?;
    let tmp = tmp_dir.path().join("s");
    let listener = std::os::unix::net::UnixListener::bind(&tmp)
        .with_context(|| format!("binding socket {}", path.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode of {}", path.display()))?;
    std::fs::hard_link(&tmp, path).with_context(|| format!("binding socket {}", path.display()))?;
    Ok(listener)
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
    let sched = Scheduler::new(cfg.sched.clone(), handler);
    ctx.set_scheduler(sched.clone());
    let weak_sched = Arc::downgrade(&sched);
    ctx.pool.set_busy_check(Box::new(move |db| {
        weak_sched.upgrade().is_some_and(|s| s.has_work(db))
    }));

    healing::spawn(&ctx).context("starting the background healer")?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut background = JoinSet::new();
    // The HTTP address is bound first: if it fails, no socket file is left behind.
    let mut http_addr = None;
    if let Some(addr) = &cfg.http {
        let (bound, fut) = http::bind(addr, ctx.clone(), stop_rx.clone()).await?;
        background.spawn(fut);
        http_addr = Some(bound);
    }
    // So is the TCP address, with its TLS files read: a bad one fails start-up.
    let tcp = bind_tcp(&cfg).await?;
    let tcp_note = match &tcp {
        Some((l, _)) => l
            .local_addr()
            .map_or_else(|_| cfg.net.listen.clone(), |a| a.to_string()),
        None => "off".to_owned(),
    };
    let listener = bind_private(&cfg.socket, cfg.socket_mode)?;
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;

    {
        let ctx = ctx.clone();
        let mut stop = stop_rx.clone();
        background.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let c = ctx.clone();
                        let _ = tokio::task::spawn_blocking(move || c.pool.close_idle())
                        .await;
                    }
                    _ = stop.changed() => return,
                }
            }
        });
    }

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    // One line a user can act on: the version, where the data is (absolute), where to
    // connect and scrape (the real port for `--http 127.0.0.1:0`), settings spelled as
    // their flags are.
    let data_dir = std::path::absolute(&cfg.data_dir).unwrap_or_else(|_| cfg.data_dir.clone());
    let http_note = http_addr.map_or_else(|| "off".to_owned(), |a| format!("http://{a}/metrics"));
    tracing::info!(
        version = %env!("CARGO_PKG_VERSION"),
        socket = %cfg.socket.display(),
        data_dir = %data_dir.display(),
        http = %http_note,
        tcp = %tcp_note,
        tls = tcp.as_ref().is_some_and(|(_, t)| t.is_some()),
        policy = %cfg.sched.policy.name(),
        fsync = %fsync_name(cfg.wal.fsync.mode),
        "docdb listening"
    );

    let limit = (cfg.max_connections > 0).then(|| Arc::new(Semaphore::new(cfg.max_connections)));
    // Server-wide commands of every connection share these slots (and so a bounded
    // number of blocking threads).
    let global = GlobalPool::start(GlobalPool::default_threads())
        .context("starting the threads of server-wide commands")?;
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
                let permit = match admit(&fds, limit.as_ref(), &stream, ctx.pool.open_count()) {
                    Ok(p) => p,
                    Err(why) => {
                        refuse(stream, why);
                        continue;
                    }
                };
                let ctx = ctx.clone();
                let stop = stop_rx.clone();
                let global = global.clone();
                conns.spawn(async move {
                    connection::serve(stream, ctx, stop, global).await;
                    drop(permit);
                });
            }
            accepted = accept_tcp(&tcp) => {
                let (stream, tls) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                // Replies are small frames written as soon as they are ready.
                let _ = stream.set_nodelay(true);
                // The same limits as the Unix socket: descriptors, then connections.
                // A TLS client cannot read a plain error frame: it is only closed.
                let permit = match admit(&fds, limit.as_ref(), &stream, ctx.pool.open_count()) {
                    Ok(p) => p,
                    Err(why) => {
                        refuse_tcp(stream, tls.is_some(), why);
                        continue;
                    }
                };
                let ctx = ctx.clone();
                let stop = stop_rx.clone();
                let global = global.clone();
                conns.spawn(async move {
                    connection::serve_tcp(stream, tls, ctx, stop, global).await;
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
    drop(tcp);
    let _ = stop_tx.send(true);
    // A long index build must not hold up the drain: cancelled now, its CreateIndex
    // is answered at once and leaves nothing.
    ctx.index_builds.stop_all();
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

/// `--fsync-mode`'s spelling of a mode.
fn fsync_name(m: docdb_core::FsyncMode) -> &'static str {
    use docdb_core::FsyncMode as F;
    match m {
        F::Always => "always",
        F::Group => "group",
        F::Interval => "interval",
        F::None => "none",
    }
}

/// Binds `net.listen` when set, with the TLS acceptor of `net.tls_cert` and
/// `net.tls_key` (none: plain TCP, which `validate` allowed only on loopback).
async fn bind_tcp(
    cfg: &ServerConfig,
) -> anyhow::Result<Option<(TcpListener, Option<tokio_rustls::TlsAcceptor>)>> {
    let Some(addr) = cfg.net.listen_addr() else {
        return Ok(None);
    };
    let tls = if cfg.net.tls() {
        Some(tls::acceptor(&cfg.net.tls_cert, &cfg.net.tls_key)?)
    } else {
        None
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("net.listen (--listen) {addr}: cannot listen"))?;
    Ok(Some((listener, tls)))
}

/// The next TCP connection with the TLS acceptor it goes through; never, when TCP
/// is off.
async fn accept_tcp(
    tcp: &Option<(TcpListener, Option<tokio_rustls::TlsAcceptor>)>,
) -> std::io::Result<(TcpStream, Option<tokio_rustls::TlsAcceptor>)> {
    match tcp {
        Some((l, tls)) => l.accept().await.map(|(s, _)| (s, tls.clone())),
        None => std::future::pending().await,
    }
}

/// Admits a new connection (Unix or TCP alike) under the file-descriptor reserve and
/// `max_connections`: its permit (none without a cap), or why it is turned away.
fn admit(
    fds: &resources::FdPlan,
    limit: Option<&Arc<Semaphore>>,
    stream: &impl std::os::fd::AsRawFd,
    open_dbs: usize,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, &'static str> {
    if fds.short_of_fds(stream, fds.reserve(open_dbs)) {
        return Err(msg::LOW_ON_FDS);
    }
    let Some(sem) = limit else {
        return Ok(None);
    };
    match sem.clone().try_acquire_owned() {
        Ok(p) => Ok(Some(p)),
        Err(_) if fds.capped_by_fds => Err(msg::LOW_ON_FDS),
        Err(_) => Err(msg::TOO_MANY_CONNECTIONS),
    }
}

/// [`refuse`] for TCP: a plain TCP client is told why; a TLS client, which cannot
/// read a frame before a handshake, is only closed (no task, no handshake: a burst
/// of them must not hold descriptors).
fn refuse_tcp(stream: TcpStream, tls: bool, why: &'static str) {
    tracing::debug!(why, tls, "TCP connection turned away");
    if let (false, Ok(std)) = (tls, stream.into_std()) {
        refuse_on(&std, why);
    }
}

/// Tells a client over `max_connections`, or arriving while file descriptors are
/// short, why it is turned away, and closes the connection at once.
fn refuse(stream: tokio::net::UnixStream, why: &'static str) {
    if let Ok(std) = stream.into_std() {
        refuse_on(&std, why);
    }
}

/// Writes one error frame to a freshly accepted socket (the caller then drops it).
fn refuse_on<S>(std: &S, why: &'static str)
where
    for<'a> &'a S: std::io::Write,
{
    let mut buf = Vec::new();
    encode_response(
        &Response::new(0, Status::Error, why.as_bytes().to_vec()),
        &mut buf,
    );
    // IMPORTANT: no task, no waiting: a burst of refused clients must not hold a
    // descriptor each. A fresh socket's buffer always has room for this one small
    // frame, so a non-blocking write sends it whole. The write is a plain system call
    // on the std socket: tokio's `try_write` answers WouldBlock without writing until
    // the reactor has seen the new socket writable, which it has not yet.
    let _ = std::io::Write::write(&mut &*std, &buf);
}
