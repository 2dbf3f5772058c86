//! The job model both Airlock planes share: the pipeline file, the DAG
//! engine, executors, source checkout with gix, output collection, the job
//! environment and the pass record that crosses the trust boundary.
#![forbid(unsafe_code)]

pub mod dag;
pub mod env;
pub mod error_chain;
pub mod events;
pub mod executor;
pub mod http_server;
pub mod image;
pub mod jsonl;
pub mod log;
pub mod logging;
pub mod outputs;
pub mod record;
pub mod secret;
pub mod shutdown;
pub mod source;
pub mod spec;
pub mod terminal;
pub mod tree;
