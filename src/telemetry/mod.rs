//! What ledge reports about itself.
//!
//! - `status`: the status document behind `ledge status`, made from the
//!   running parts; the uplink's part comes from the status it exports.
//! - `prometheus`: that document as Prometheus text (the HTTP server,
//!   `http`, serves it at `/metrics`).
//! - `ship`: the document spooled upstream as a metric snapshot every
//!   `metrics.interval`, and ledge's own warnings and errors shipped
//!   upstream as log records.

mod prometheus;
mod ship;
mod status;

pub use prometheus::prometheus;
pub use ship::{ship_metrics, ship_own_logs};
pub use status::StatusSources;
