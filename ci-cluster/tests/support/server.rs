//! A running `ci-cluster serve` process, killed on drop (so a failing
//! assertion leaves nothing behind).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http::{fetch, get};

/// How long [`Server::wait_final`] waits unless told otherwise.
pub const FINAL_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Server {
    child: Option<Child>,
    pub base: String,
    config: PathBuf,
    log: PathBuf,
}

impl Server {
    /// Puts a free port where the config says `@PORT@` and starts the
    /// server; its stderr goes to the config's path with `.log`.
    pub fn start(config: &Path) -> Server {
        let port = free_port();
        let text = std::fs::read_to_string(config)
            .expect("config")
            .replace("@PORT@", &port.to_string());
        std::fs::write(config, text).expect("config");
        let mut server = Server {
            child: None,
            base: format!("http://127.0.0.1:{port}"),
            config: config.into(),
            log: config.with_extension("log"),
        };
        server.spawn();
        server
    }

    /// Starts the process (again, after [`Server::kill9`]: the log is appended
    /// to) and waits until `/healthz` answers.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_ci-cluster"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("AIRLOCK_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ci-cluster serve");
        self.child = Some(child);
        let healthz = self.url("/healthz");
        self.wait_until(Duration::from_secs(30), || {
            match fetch("GET", &healthz, &[], b"") {
                Ok(r) if r.status == 200 => Ok(()),
                other => Err(format!(
                    "server did not start ({:?})",
                    other.map(|r| r.status)
                )),
            }
        });
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Calls `probe` every 100 ms until it returns `Ok`; after `timeout`,
    /// panics with its last `Err` and the server's log.
    pub fn wait_until<T>(
        &self,
        timeout: Duration,
        mut probe: impl FnMut() -> Result<T, String>,
    ) -> T {
        let started = Instant::now();
        loop {
            match probe() {
                Ok(value) => return value,
                Err(why) => assert!(
                    started.elapsed() < timeout,
                    "{why} after {timeout:?}:\n{}",
                    self.log_text()
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET /api/v1/runs/{id}` (Null when it fails).
    pub fn run(&self, id: i64) -> Value {
        let (status, body) = get(&self.url(&format!("/api/v1/runs/{id}")));
        if status == 200 { body } else { Value::Null }
    }

    /// Waits until the run's status satisfies `pred`; returns the run detail.
    pub fn wait_run(
        &self,
        id: i64,
        what: &str,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Value {
        self.wait_until(timeout, || {
            let run = self.run(id);
            let status = run["run"]["status"].as_str().unwrap_or("").to_string();
            if pred(&status) {
                Ok(run)
            } else {
                Err(format!("run {id} never {what} (last: {status})"))
            }
        })
    }

    /// Waits up to [`FINAL_TIMEOUT`] until the run is final; returns it.
    pub fn wait_final(&self, id: i64) -> Value {
        self.wait_final_within(id, FINAL_TIMEOUT)
    }

    pub fn wait_final_within(&self, id: i64, timeout: Duration) -> Value {
        self.wait_run(
            id,
            "final",
            |s| ["passed", "failed", "cancelled", "error"].contains(&s),
            timeout,
        )
    }

    pub fn wait_running(&self, id: i64) -> Value {
        self.wait_run(id, "running", |s| s == "running", Duration::from_secs(60))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}
