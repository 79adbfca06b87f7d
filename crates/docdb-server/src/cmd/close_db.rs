//! CloseDB (2): served through the database's queue so it runs after the requests
//! queued before it; the database is checkpointed and closed once no worker holds
//! it, and reopened transparently by the next request. Empty reply. The handling is
//! in `serve_batch` (`Context::close_requested`). A database read-only after an I/O
//! failure is closed all the same and answered OK (the failed writes were answered
//! with their error); the next request reopens it.
