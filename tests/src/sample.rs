//! The demo's sample service (`demo/sample-service`) as a fresh Git repository.

use std::path::{Path, PathBuf};

use crate::git::SampleRepo;

/// The sample service's files in this source tree.
pub fn sample_service_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/sample-service")
}

/// A work repository under `dir` holding the sample service, committed on `main`.
pub fn sample_repo(dir: &Path) -> SampleRepo {
    let repo = SampleRepo::init(dir);
    let root = sample_service_dir();
    for entry in walk(&root) {
        let rel = entry
            .strip_prefix(&root)
            .expect("inside")
            .to_string_lossy()
            .to_string();
        let bytes = std::fs::read(&entry).expect("read sample file");
        let executable = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&entry).expect("meta").permissions(),
        ) & 0o111
            != 0;
        repo.write_mode(&rel, &bytes, executable);
    }
    repo.commit("greet: first version");
    repo
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
