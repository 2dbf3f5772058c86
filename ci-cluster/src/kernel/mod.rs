//! The server's shared kernel: state, refusals and the event path that the webhooks
//! (`serve::http`), the JSON API (`api`) and the web UI (`web`) all use. A leaf: it imports
//! none of them, so they depend on it and not on each other; `serve` only wires them up.

pub mod events;
mod intake_writer;
pub mod metrics;
pub mod refusal;
mod state;

pub use events::manual_event;
pub(crate) use events::store_event;
pub use intake_writer::IntakeWriter;
pub use refusal::{MAX_BODY_BYTES, Refusal, require_admin};
pub(crate) use refusal::{internal, limited_body, refuse_delivery};
pub use state::{AppState, now_ms};
