//! One client connection: a reader that frames and dispatches requests (many may be
//! in flight: pipelining) and a writer that sends responses as they complete, matched
//! by request id.
//!
//! The length prefix is checked before anything is allocated; a frame over the limit
//! or one that does not decode gets an Error response (with its request id when
//! readable) and the connection is closed once every request already dispatched has
//! been answered. Other connections are not affected. At shutdown, requests the client
//! already sent but the server had not read yet are answered `server is shutting
//! down`; none is left without a reply.

use std::sync::Arc;

use docdb_core::error::msg;
use docdb_protocol::{decode_request, encode_response, Request, Response, Status, MAX_FRAME};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};

use crate::cmd;
use crate::context::Context;
use crate::errors::Category;
use crate::reply::{ReplyTo, Task};
use crate::scheduler::Rejected;

/// How long a draining connection may stay quiet before it is closed.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

pub async fn serve(stream: UnixStream, ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    ctx.metrics.connections.inc();
    let (rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Response>();
    let writer = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Some(resp) = rx.recv().await {
            buf.clear();
            encode_response(&resp, &mut buf);
            // Coalesce whatever else is ready into one write.
            while buf.len() < 1 << 20 {
                match rx.try_recv() {
                    Ok(r) => encode_response(&r, &mut buf),
                    Err(_) => break,
                }
            }
            if wr.write_all(&buf).await.is_err() {
                // The client went away; drain so senders never block (they cannot:
                // the channel is unbounded) and stop.
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    // After the shutdown signal the connection drains: frames the client had already
    // sent are read and answered `server is shutting down` (with their request ids)
    // instead of being cut off, until the client has been quiet for a moment.
    let mut draining = false;
    loop {
        // Wait for the next frame to begin. `fill_buf` is cancel-safe, so racing it
        // against the signal loses no bytes.
        let more = if draining {
            matches!(
                tokio::time::timeout(DRAIN_QUIET, rd.fill_buf()).await,
                Ok(Ok(b)) if !b.is_empty()
            )
        } else {
            tokio::select! {
                biased;
                r = rd.fill_buf() => matches!(r, Ok(b) if !b.is_empty()),
                _ = shutdown.changed() => {
                    draining = true;
                    continue;
                }
            }
        };
        if !more {
            break; // EOF, reset, or quiet while draining
        }
        let Ok(len) = rd.read_u32_le().await else {
            break;
        };
        let len = len as usize;
        if len > MAX_FRAME {
            let _ = tx.send(Response::new(
                0,
                Status::Error,
                msg::FRAME_TOO_LARGE.as_bytes().to_vec(),
            ));
            ctx.metrics.error(Category::Validation);
            break;
        }
        let mut frame = vec![0u8; len];
        if rd.read_exact(&mut frame).await.is_err() {
            break;
        }
        let req = match decode_request(&frame) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Response::new(
                    e.request_id.unwrap_or(0),
                    Status::Error,
                    e.to_string().into_bytes(),
                ));
                ctx.metrics.error(Category::Validation);
                break;
            }
        };
        if draining {
            let _ = tx.send(Response::new(
                req.request_id,
                Status::Error,
                msg::SHUTTING_DOWN.as_bytes().to_vec(),
            ));
            continue;
        }
        dispatch(&ctx, req, &tx).await;
    }
    drop(tx);
    let _ = writer.await;
    ctx.metrics.connections.dec();
}

async fn dispatch(ctx: &Arc<Context>, req: Request, tx: &mpsc::UnboundedSender<Response>) {
    let Some(command) = req.command() else {
        let _ = tx.send(Response::new(
            req.request_id,
            Status::Error,
            msg::UNKNOWN_COMMAND.as_bytes().to_vec(),
        ));
        return;
    };
    if !cmd::is_per_db(command) {
        // OpenDB may open (recover) a database and ListDBs reads every database's
        // stats: keep them off the I/O threads.
        let ctx2 = ctx.clone();
        let reply = ReplyTo::new(tx.clone(), req.request_id);
        tokio::task::spawn_blocking(move || {
            let (status, data) = cmd::serve_global(&ctx2, &req);
            reply.send(status, data);
        });
        return;
    }
    if ctx.pool.catalog().get(req.db_id).is_none() {
        let _ = tx.send(Response::new(
            req.request_id,
            Status::Error,
            msg::DB_NOT_OPEN.as_bytes().to_vec(),
        ));
        return;
    }
    let (db, rid) = (req.db_id, req.request_id);
    let task = Task::new(req, ReplyTo::new(tx.clone(), rid));
    if let Err((why, task)) = ctx.scheduler().enqueue(db, task) {
        let text = match why {
            Rejected::QueueFull => msg::QUEUE_FULL,
            Rejected::Stopped => msg::POOL_STOPPED,
        };
        let op = task.req.command().map_or("unknown", |c| c.name());
        ctx.metrics.record(op, Status::Error, 0.0);
        task.reply.error(text);
    }
}
