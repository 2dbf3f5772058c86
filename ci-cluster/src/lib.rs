//! Airlock's untrusted plane: forge intake, durable runs, reporting back and
//! pass records. It runs anyone's code (in the sandbox), so it holds no
//! signing key and never connects to the trusted side.
#![forbid(unsafe_code)]

pub mod api;
pub mod artifacts;
pub mod cli;
pub mod config;
pub mod event;
pub mod intake;
pub mod kernel;
pub mod report;
pub mod secret;
pub mod serve;
pub mod store;
pub mod web;
