//! What every part of the server shares: the pool, the scheduler, the metrics.

use std::sync::{Arc, OnceLock};

use crate::auth::Auth;
use crate::config::ServerConfig;
use crate::index_builds::IndexBuilds;
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::scheduler::Scheduler;

pub struct Context {
    pub cfg: ServerConfig,
    pub pool: Pool,
    pub metrics: Metrics,
    /// Access control: `[auth]` and the token key.
    pub auth: Auth,
    /// CreateIndex's builds running now (`limits.max_index_builds`).
    pub index_builds: IndexBuilds,
    scheduler: OnceLock<Arc<Scheduler>>,
    /// Test hook: ops on this collection panic (env `DOCDB_TEST_PANIC_COLLECTION`).
    /// Only in builds with the `test-hooks` feature (the docdb crate's tests).
    #[cfg(feature = "test-hooks")]
    pub panic_collection: Option<String>,
    /// Test hook: the first build of an index of this name panics inside the engine's
    /// build (env `DOCDB_TEST_PANIC_INDEX_BUILD`); `true` once it has.
    #[cfg(feature = "test-hooks")]
    pub panic_index_build: Option<(String, std::sync::atomic::AtomicBool)>,
}

impl Context {
    pub fn new(cfg: ServerConfig, pool: Pool) -> Context {
        let metrics = Metrics::new();
        metrics.register_pool(&pool);
        let auth = Auth::new(cfg.auth.clone(), &cfg.data_dir);
        let index_builds = IndexBuilds::new(cfg.limits.max_index_builds);
        let builds = index_builds.clone();
        pool.set_drop_hook(Box::new(move |id| builds.cancel_db(id)));
        Context {
            auth,
            index_builds,
            cfg,
            pool,
            metrics,
            scheduler: OnceLock::new(),
            #[cfg(feature = "test-hooks")]
            panic_collection: std::env::var("DOCDB_TEST_PANIC_COLLECTION").ok(),
            #[cfg(feature = "test-hooks")]
            panic_index_build: std::env::var("DOCDB_TEST_PANIC_INDEX_BUILD")
                .ok()
                .map(|n| (n, std::sync::atomic::AtomicBool::new(false))),
        }
    }

    pub fn set_scheduler(&self, s: Arc<Scheduler>) {
        let _ = self.scheduler.set(s);
    }

    /// # Panics
    /// Never after start-up: the server sets the scheduler before accepting requests.
    pub fn scheduler(&self) -> &Arc<Scheduler> {
        #[expect(
            clippy::expect_used,
            reason = "set once at start-up, before any request"
        )]
        self.scheduler.get().expect("scheduler is set at start-up")
    }

    pub fn render_metrics(&self) -> String {
        self.metrics.render(&self.pool, self.scheduler())
    }

    /// CloseDB: close once the batch that served it has let go of the handle.
    pub fn close_requested(&self, db_id: u64) {
        if let Err(e) = self.pool.close_db(db_id) {
            tracing::debug!(db_id, error = %e, "close request");
        }
    }
}
