//! The world a server runs in: a temp dir, a `git daemon` serving the
//! sample repository as `greet`, the stand-in forge, and the `ci.toml`
//! written for them.

use std::path::PathBuf;
use std::time::Duration;

use airlock_tests::forge::{RecordedRequest, StandInForge};
use airlock_tests::git::{GitDaemon, SampleRepo, init_bare};
use airlock_tests::sample::sample_repo;

use super::hooks::{gerrit_headers, patchset_created};
use super::http::post;
use super::server::Server;
use super::{ADMIN_TOKEN, GERRIT_SECRET, GITHUB_SECRET, GITLAB_TOKEN};

pub struct World {
    pub root: PathBuf,
    daemon: GitDaemon,
    /// The served repository, where `push` sends commits.
    bare: PathBuf,
    pub repo: SampleRepo,
    pub forge: StandInForge,
    pub rt: tokio::runtime::Runtime,
    _tmp: tempfile::TempDir,
}

/// A server that was killed (or panicked) mid-job leaves its jobs' workspace filesystems
/// mounted under the data directory, where the temporary directory's own removal cannot reach
/// them: detach them and remove the tree the way `serve` does for a crashed predecessor.
impl Drop for World {
    fn drop(&mut self) {
        let _ = airlock_pipeline::executor::remove_work_dir(&self.root);
    }
}

impl World {
    /// The sample repository's head is pushed as `refs/heads/main`.
    pub fn new() -> World {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("rt");
        // Under /var/tmp, traversable: the sandbox user must reach its workspace.
        let tmp = tempfile::Builder::new()
            .prefix(&format!("airlock-{}-", env!("CARGO_CRATE_NAME")))
            .tempdir_in("/var/tmp")
            .expect("tmp");
        let root = tmp.path().to_path_buf();
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .expect("chmod");
        let served = root.join("served");
        let bare = init_bare(&served, "greet");
        let repo = sample_repo(&root.join("repo"));
        repo.push(&bare.display().to_string(), &repo.head(), "refs/heads/main");
        let daemon = GitDaemon::start(&served);
        let forge = rt.block_on(StandInForge::start());
        World {
            root,
            daemon,
            bare,
            repo,
            forge,
            rt,
            _tmp: tmp,
        }
    }

    /// Writes `ci.toml` (with `@PORT@` for [`Server::start`]) and every
    /// secret file it may name; returns its path.
    pub fn config(&self, config: Config) -> PathBuf {
        for (name, value) in [
            ("gerrit-secret", GERRIT_SECRET),
            ("gerrit-password", "http-pw"),
            ("github-secret", GITHUB_SECRET),
            ("github-token", "gh-token"),
            ("gitlab-token", GITLAB_TOKEN),
            ("gitlab-api", "gl-api-token"),
            ("admin", ADMIN_TOKEN),
        ] {
            std::fs::write(self.root.join(name), value).expect("secret");
        }
        let path = self.root.join("ci.toml");
        std::fs::write(&path, config.render(self)).expect("config");
        path
    }

    /// Pushes `commit` to the served repository as `git_ref`.
    pub fn push(&self, commit: &str, git_ref: &str) {
        self.repo
            .push(&self.bare.display().to_string(), commit, git_ref);
    }

    /// Pushes `commit` as Gerrit's `refs/changes/NN/{change}/{patchset}`.
    pub fn push_change(&self, change: u32, patchset: u32, commit: &str) {
        self.push(
            commit,
            &format!("refs/changes/{:02}/{change}/{patchset}", change % 100),
        );
    }

    /// Commits `pipeline` as the pipeline file, pushes it as patchset 1 of
    /// `change` and sends Gerrit's `patchset-created`; returns the run id.
    pub fn change_with_pipeline(
        &self,
        server: &Server,
        change: u32,
        subject: &str,
        pipeline: &str,
    ) -> i64 {
        self.repo.write(".pipeline/config.yaml", pipeline);
        let commit = self.repo.commit(subject);
        self.push_change(change, 1, &commit);
        let (status, reply) = post(
            &server.url("/hooks/gerrit"),
            &gerrit_headers(),
            &patchset_created(change, 1, &commit, subject),
        );
        assert_eq!(status, 202, "{reply}");
        reply["run"].as_i64().expect("run id")
    }

    /// Waits until the requests the stand-in forge received satisfy `pred`.
    pub fn wait_requests(
        &self,
        what: &str,
        pred: impl Fn(&[RecordedRequest]) -> bool,
        timeout: Duration,
    ) -> Vec<RecordedRequest> {
        self.rt
            .block_on(self.forge.wait_for(pred, timeout))
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }
}

/// Gerrit's `ReviewInput`s (votes) among the forge's requests.
pub fn reviews(requests: &[RecordedRequest]) -> Vec<&RecordedRequest> {
    requests
        .iter()
        .filter(|r| r.path.ends_with("/review"))
        .collect()
}

/// What `ci.toml` holds besides Gerrit, which is always configured.
pub struct Config {
    concurrency: u32,
    admin: bool,
    github: bool,
    gitlab: bool,
    projects: Vec<Project>,
    sections: Vec<String>,
}

impl Default for Config {
    /// Gerrit only, concurrency 2, no admin token, no projects.
    fn default() -> Config {
        Config {
            concurrency: 2,
            admin: false,
            github: false,
            gitlab: false,
            projects: Vec::new(),
            sections: Vec::new(),
        }
    }
}

impl Config {
    pub fn concurrency(mut self, n: u32) -> Config {
        self.concurrency = n;
        self
    }

    /// Admin actions with [`ADMIN_TOKEN`].
    pub fn admin(mut self) -> Config {
        self.admin = true;
        self
    }

    /// GitHub's webhook, with statuses reported to the stand-in forge.
    pub fn github(mut self) -> Config {
        self.github = true;
        self
    }

    /// GitLab's webhook, with statuses reported to the stand-in forge.
    pub fn gitlab(mut self) -> Config {
        self.gitlab = true;
        self
    }

    /// Adds a project, after those added before.
    pub fn project(mut self, project: Project) -> Config {
        self.projects.push(project);
        self
    }

    /// Adds a table at the end of the file, e.g. `[artifacts]` and its keys.
    pub fn section(mut self, toml: &str) -> Config {
        self.sections.push(toml.into());
        self
    }

    fn render(&self, world: &World) -> String {
        let root = world.root.display();
        let forge = world.forge.url();
        let mut text = format!(
            "listen = \"127.0.0.1:@PORT@\"\ndata_dir = \"{root}/data\"\nconcurrency = {}\n",
            self.concurrency
        );
        if self.admin {
            text += &format!("admin_token = {{ file = \"{root}/admin\" }}\n");
        }
        text += &format!(
            r#"
[forges.gerrit]
webhook_secret = {{ file = "{root}/gerrit-secret" }}
url = "{forge}"
user = "airlock-ci"
password = {{ file = "{root}/gerrit-password" }}
"#
        );
        if self.github {
            text += &format!(
                r#"
[forges.github]
webhook_secret = {{ file = "{root}/github-secret" }}
api_url = "{forge}"
api_token = {{ file = "{root}/github-token" }}
"#
            );
        }
        if self.gitlab {
            text += &format!(
                r#"
[forges.gitlab]
webhook_token = {{ file = "{root}/gitlab-token" }}
api_url = "{forge}/api/v4"
api_token = {{ file = "{root}/gitlab-api" }}
"#
            );
        }
        let git = world.daemon.url("greet");
        for p in &self.projects {
            text += &format!(
                "\n[[projects]]\nname = \"{}\"\nforge = \"{}\"\n",
                p.name, p.forge
            );
            if let Some(repository) = p.repository {
                text += &format!("repository = \"{repository}\"\n");
            }
            text += &format!("git_url = \"{git}\"\n");
            for line in &p.lines {
                text += &format!("{line}\n");
            }
        }
        for section in &self.sections {
            text += &format!("\n{section}\n");
        }
        text
    }
}

/// A `[[projects]]` entry; every project builds the served sample repository.
pub struct Project {
    name: String,
    forge: &'static str,
    repository: Option<&'static str>,
    lines: Vec<String>,
}

impl Project {
    pub fn gerrit(name: &str) -> Project {
        Project::new(name, "gerrit", None)
    }

    /// A GitHub project, repository `example/greet`.
    pub fn github(name: &str) -> Project {
        Project::new(name, "github", Some("example/greet"))
    }

    /// A GitLab project, repository `example/greet`.
    pub fn gitlab(name: &str) -> Project {
        Project::new(name, "gitlab", Some("example/greet"))
    }

    fn new(name: &str, forge: &'static str, repository: Option<&'static str>) -> Project {
        Project {
            name: name.into(),
            forge,
            repository,
            lines: Vec::new(),
        }
    }

    /// Adds a line of TOML to the entry, e.g. `concurrency = 2`.
    pub fn with(mut self, line: &str) -> Project {
        self.lines.push(line.into());
        self
    }
}
