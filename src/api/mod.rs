//! The read-only HTTP server: `/health`, `/metrics` (Prometheus text) and `/status` (JSON).
//! It reads shared state and never places or changes orders; it binds to loopback unless the
//! configuration explicitly allows otherwise.
