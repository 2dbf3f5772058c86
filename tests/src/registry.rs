//! A real Debian `docker-registry` (CNCF distribution 2.8) on a free
//! 127.0.0.1 port with its storage in a temp dir, killed on Drop: the OCI
//! registry the trusted builder's tests and benchmarks push to.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry; dropping it stops it.
pub struct TestRegistry {
    child: Child,
    /// Config, log and storage.
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub host: String,
}

impl TestRegistry {
    /// Starts the registry and waits until it accepts connections.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // Ask the OS for a free port, then hand it to the registry.
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry not installed (scripts/install-deps.sh)");
        let reg = Self { child, dir, host };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&reg.host).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// The file holding blob `digest` in the registry's filesystem storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The temp dir holding config, log and storage.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
