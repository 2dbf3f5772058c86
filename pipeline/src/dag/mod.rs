//! Scheduling a pipeline's jobs as a DAG: selection, planning, execution
//! with retries, timeouts, cancellation and published state events.

mod engine;
mod plan;
mod workspace;

pub use engine::{Engine, EngineConfig, JobReport, RunReport};
pub use plan::{Plan, PlanError, Selection};

#[cfg(test)]
mod tests;
