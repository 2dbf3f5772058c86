//! 10,000 no-op jobs in one DAG: time to validate the file, to plan, and
//! the scheduler's throughput with an executor that does nothing.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use airlock_pipeline::dag::{Engine, EngineConfig, Plan, Selection};
use airlock_pipeline::executor::{Execution, Executor, ExecutorError, ExitReason, JobRequest};
use airlock_pipeline::log::LogSink;
use tokio_util::sync::CancellationToken;

const JOBS: usize = 10_000;

struct NoOp;

impl Executor for NoOp {
    fn name(&self) -> &'static str {
        "no-op"
    }
    async fn execute(
        &self,
        _: JobRequest,
        _: LogSink,
        _: CancellationToken,
    ) -> Result<Execution, ExecutorError> {
        let now = SystemTime::now();
        Ok(Execution {
            reason: ExitReason::Exited(0),
            started: now,
            finished: now,
        })
    }
}

#[tokio::main]
async fn main() {
    // A wide, shallow graph: 100 layers of 100 jobs, each needing two jobs of the layer above.
    let mut yaml = String::from("version: 1\njobs:\n");
    for i in 0..JOBS {
        let _ = write!(yaml, "  j{i}: {{command: [\"true\"]");
        if i >= 100 {
            let _ = write!(
                yaml,
                ", needs: [j{}, j{}]",
                i - 100,
                (i - 100) / 100 * 100 + (i + 1) % 100
            );
        }
        yaml.push_str("}\n");
    }
    let t = Instant::now();
    let pipeline = airlock_pipeline::spec::parse("bench.yaml", yaml.as_bytes()).expect("valid");
    let parse = t.elapsed();
    let t = Instant::now();
    let plan = Plan::new(&pipeline, &Selection::All).expect("plan");
    let planning = t.elapsed();

    let work = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(work.path().join("src")).expect("src");
    let mut config = EngineConfig::new(work.path().join("work"));
    config.concurrency = 64;
    let engine = Engine::new(Arc::new(NoOp), config);
    let t = Instant::now();
    let report = engine
        .run(&plan, &work.path().join("src"), CancellationToken::new())
        .await;
    let run = t.elapsed();
    assert!(report.passed());

    println!("DAG of {JOBS} no-op jobs ({} bytes of YAML)", yaml.len());
    println!(
        "  parse + validate:   {:>8.1} ms",
        parse.as_secs_f64() * 1e3
    );
    println!(
        "  plan:               {:>8.1} ms  (goal < 50 ms)",
        planning.as_secs_f64() * 1e3
    );
    println!(
        "  schedule + run:     {:>8.1} ms  ({:.0} jobs/s, incl. a workspace per job)",
        run.as_secs_f64() * 1e3,
        JOBS as f64 / run.as_secs_f64()
    );
}
