//! Structured logs on stderr for every Airlock binary, filtered by an environment variable
//! (`AIRLOCK_LOG` for `ci-cluster`, `RUST_LOG` for the trusted side), default `warn`: progress
//! meant for people is printed anyway.

/// Installs the stderr subscriber (once; a second call does nothing).
pub fn init_stderr(filter_var: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(filter_var)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
