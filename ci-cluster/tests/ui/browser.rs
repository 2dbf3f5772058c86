//! Headless Chromium through a local chromedriver, spoken to over plain HTTP
//! (fantoccini without TLS features). Chromedriver runs in its own process
//! group; dropping [`Browser`] kills the group and any Chromium process still
//! using this browser's profile directory, so a failed test leaves no browser.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::support::free_port;

/// Chromedriver and the profile directory; killed (with Chromium) on drop.
struct Driver {
    child: Child,
    profile: tempfile::TempDir,
    log: PathBuf,
}

/// A WebDriver session in headless Chromium.
pub struct Browser {
    pub client: Client,
    driver: Driver,
}

impl Browser {
    pub async fn start() -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("airlock-ui-chromium-")
            .tempdir()
            .expect("profile dir");
        let log = profile.path().join("chromedriver.log");
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver (apt-get install chromium chromium-driver; scripts/install-deps.sh does)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1280,900",
            "--force-device-scale-factor=1",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": "/usr/bin/chromium", "args": args}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        // From here on a panic drops the guard, which kills chromedriver.
        let driver = Driver {
            child: driver,
            profile,
            log,
        };
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}\n{}", driver.log_text()));
        Browser { client, driver }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let element = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"));
        element
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css}: {e}"))
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|v| v.len())
            .unwrap_or(0)
    }

    /// Runs a script in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("execute {script}: {e}"))
    }

    /// Polls `script` until it returns `true`; returns how long that took.
    pub async fn wait_true(&self, script: &str, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            if self.eval(script).await == Value::Bool(true) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                return Err(format!("not true after {timeout:?}: {script}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A PNG of the whole page at 1280 pixels wide.
    pub async fn full_page_png(&self) -> Vec<u8> {
        self.full_page_png_at(1280).await
    }

    /// A PNG of the whole page at `width`: the window is made as tall as the document first.
    pub async fn full_page_png_at(&self, width: u32) -> Vec<u8> {
        self.client
            .set_window_size(width, 900)
            .await
            .expect("resize");
        let height = self
            .eval("return Math.ceil(document.documentElement.scrollHeight);")
            .await
            .as_u64()
            .unwrap_or(900);
        let height = height.clamp(600, 12_000) as u32;
        // The window's outer height includes the (headless) browser chrome.
        self.client
            .set_window_size(width, height + 140)
            .await
            .expect("resize");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = self.client.screenshot().await.expect("screenshot");
        self.client
            .set_window_size(1280, 900)
            .await
            .expect("resize back");
        png
    }

    /// Ends the session politely; dropping the browser then kills what is left.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Chromedriver's log, for failure messages.
    pub fn log_text(&self) -> String {
        self.driver.log_text()
    }
}

impl Driver {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole process group of chromedriver (Chromium is its child)...
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // ...and any Chromium process of this profile that left the group.
        let marker = self.profile.path().display().to_string();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<i32>().ok())
                else {
                    continue;
                };
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&marker) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}
