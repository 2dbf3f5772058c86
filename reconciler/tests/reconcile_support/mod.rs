//! Test support for the reconciler and promotion: a real docker-registry with images signed
//! (or not) by the trusted builder's own signing code, a bare environment repository with a
//! work clone, and a `reconciler.toml` written for them.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use airlock_pipeline::spec::model::{BaseImage, PublishImage};
use airlock_reconciler::reconcile::config::ReconcilerConfig;
use airlock_tests::git::{SampleRepo, init_bare};
pub use airlock_tests::registry::TestRegistry;
use trusted_builder::attach::{attest_image, sign_image};
use trusted_builder::oci::{ImageInputs, Registry, RegistryConfig, ResolvedFile};
use trusted_builder::provenance::{
    ExternalParameters, InternalParameters, ProvenanceInputs, Statement,
};
use trusted_builder::sign::{FileKey, Secret, generate_key_pair};

pub const PASSWORD: &str = "reconcile-test";
/// The source repository the trusted images are built from.
pub const SOURCE: &str = "git://git.example/sample-service";
/// Another repository, whose images a namespace of SOURCE must refuse.
pub const OTHER_SOURCE: &str = "git://git.example/someone-else";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Podman is installed (scripts/install-deps.sh installs it; a test without it says SKIPPED).
pub fn podman_available() -> bool {
    Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A statically linked program that prints a line and then waits forever (or exits when its
/// second argument is `once`): a "service" that runs with no network and no libc in a scratch
/// image. Built once per test binary.
pub fn service_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("airlock-svc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let src = dir.join("svc.c");
        std::fs::write(
            &src,
            "#include <signal.h>\n#include <stdio.h>\n#include <string.h>\n#include <unistd.h>\nstatic void stop(int s) { (void)s; _exit(0); }\nint main(int c, char **v) {\n  signal(SIGTERM, stop);\n  printf(\"serving %s\\n\", c > 1 ? v[1] : \"\");\n  fflush(stdout);\n  if (c > 2 && strcmp(v[2], \"once\") == 0) return 0;\n  for (;;) pause();\n}\n",
        )
        .expect("write");
        let bin = dir.join("svc");
        let st = Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(&bin)
            .arg(&src)
            .status()
            .expect("cc");
        assert!(st.success(), "cc -static failed (libc6-dev installed?)");
        bin
    })
}

/// A signing key pair on disk.
pub struct Keys {
    pub dir: tempfile::TempDir,
    pub key: FileKey,
    pub public: PathBuf,
}

pub fn keys() -> Keys {
    let dir = tempfile::tempdir().expect("tempdir");
    let pair = generate_key_pair(dir.path(), &Secret::new(PASSWORD)).expect("keys");
    let key = FileKey::load(&pair.private_key, &Secret::new(PASSWORD)).expect("load");
    Keys {
        public: pair.public_key.clone(),
        key,
        dir,
    }
}

/// How an image in a test is (not) vouched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vouch<'a> {
    /// Signed and attested by the trusted key, built from `source`.
    Trusted(&'a str),
    /// Signed and attested by another key.
    OtherKey,
    /// Nothing attached.
    Unsigned,
}

/// Registry, trusted and untrusted keys, an environment repository and a state directory.
pub struct World {
    pub dir: tempfile::TempDir,
    pub registry: TestRegistry,
    pub client: Registry,
    pub trusted: Keys,
    pub other: Keys,
    /// Bare environment repository (the reconciler's URL is this path).
    pub env_bare: PathBuf,
    /// A work clone to commit desired state in.
    pub env: SampleRepo,
}

impl World {
    pub fn new() -> World {
        init();
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = TestRegistry::start();
        let client = Registry::new(&RegistryConfig {
            insecure: vec![registry.host.clone()],
            ..Default::default()
        })
        .expect("client");
        let env_bare = init_bare(dir.path(), "environments");
        let env = SampleRepo::init(dir.path().join("env-work"));
        World {
            registry,
            client,
            trusted: keys(),
            other: keys(),
            env_bare,
            env,
            dir,
        }
    }

    /// `127.0.0.1:PORT/<name>`.
    pub fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.registry.host)
    }

    /// Pushes a scratch image running the service binary with `arg`; `seed` varies the digest.
    pub async fn push_image(&self, repository: &str, seed: i64, arg: &str) -> String {
        let bin = service_binary().to_path_buf();
        let image = PublishImage {
            base: BaseImage::Scratch,
            files: BTreeMap::from([("svc".to_owned(), "/usr/local/bin/svc".to_owned())]),
            entrypoint: vec!["/usr/local/bin/svc".into(), arg.into()],
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
        };
        let resolve = move |output: &str| {
            (output == "svc").then(|| ResolvedFile {
                path: bin.clone(),
                executable: true,
            })
        };
        let built = self
            .client
            .assemble_image(&ImageInputs {
                image: &image,
                resolve: &resolve,
                source_date_epoch: 1_700_000_000 + seed,
                source: SOURCE,
                revision: COMMIT,
            })
            .await
            .expect("assemble");
        self.client
            .push(&format!("{repository}:s{seed}"), &built)
            .await
            .expect("push")
    }

    /// Signs and attests `repository@digest` as `vouch` says.
    pub async fn vouch(&self, repository: &str, digest: &str, vouch: Vouch<'_>) {
        let (key, source) = match vouch {
            Vouch::Unsigned => return,
            Vouch::Trusted(source) => (&self.trusted.key, source),
            Vouch::OtherKey => (&self.other.key, SOURCE),
        };
        sign_image(&self.client, key, repository, digest, None)
            .await
            .expect("sign");
        attest_image(
            &self.client,
            key,
            repository,
            digest,
            &statement(repository, digest, source),
        )
        .await
        .expect("attest");
    }

    /// Pushes and vouches; returns `REPO@sha256:...`.
    pub async fn image(&self, name: &str, seed: i64, vouch: Vouch<'_>) -> String {
        let repository = self.repo(name);
        let digest = self.push_image(&repository, seed, name).await;
        self.vouch(&repository, &digest, vouch).await;
        format!("{repository}@{digest}")
    }

    /// Writes `reconciler.toml` for `environments` = [(env, target, [(namespace, [sources])])]
    /// and loads it.
    pub fn config(&self, environments: &[EnvSpec<'_>]) -> (PathBuf, ReconcilerConfig) {
        let conf = self.dir.path().join("containers.conf");
        std::fs::write(
            &conf,
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n[engine]\nruntime = \"runc\"\n",
        )
        .expect("containers.conf");
        let mut toml = format!(
            "data_dir = \"state\"\ntrusted_keys = [{:?}]\npoll_interval_secs = 3600\n\n[environment_repo]\nurl = {:?}\nbranch = \"main\"\n\n[registry]\ninsecure = [{:?}]\n\n[podman]\ncontainers_conf = \"containers.conf\"\ntls_verify = false\n",
            self.trusted.public.display().to_string(),
            self.env_bare.display().to_string(),
            self.registry.host,
        );
        for (env, target, namespaces) in environments {
            toml.push_str(&format!("\n[environments.{env}]\ntarget = {target:?}\n"));
            for (ns, sources) in *namespaces {
                toml.push_str(&format!(
                    "[environments.{env}.namespaces.{ns}]\nallowed_sources = {sources:?}\n"
                ));
            }
        }
        let path = self.dir.path().join("reconciler.toml");
        std::fs::write(&path, toml).expect("write config");
        let config = ReconcilerConfig::load(&path).expect("config");
        (path, config)
    }

    /// Writes `environments/<env>/<ns>/<file>` in the work clone (not committed).
    pub fn write_manifest(&self, env: &str, ns: &str, file: &str, text: &str) {
        self.env
            .write(&format!("environments/{env}/{ns}/{file}"), text);
    }

    /// Commits everything and pushes it to `main` of the bare repository.
    pub fn commit(&self, message: &str) -> String {
        self.env.commit_and_push(
            message,
            &self.env_bare.display().to_string(),
            "refs/heads/main",
        )
    }
}

/// (environment, target, [(namespace, [allowed sources])]) for [`World::config`].
pub type EnvSpec<'a> = (&'a str, &'a str, &'a [(&'a str, &'a [&'a str])]);

/// A Deployment of one container running `image`.
pub fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: {name}\n        image: {image}\n"
    )
}

/// A Pod of one container running `image`.
pub fn pod(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: {name}\n    image: {image}\n"
    )
}

fn statement(repository: &str, digest: &str, source: &str) -> Statement {
    let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("time");
    Statement::new(&ProvenanceInputs {
        image_repository: repository.to_owned(),
        image_digest: digest.to_owned(),
        external: ExternalParameters {
            repository: source.to_owned(),
            git_ref: "refs/heads/main".to_owned(),
            commit: COMMIT.to_owned(),
            job: "publish".to_owned(),
        },
        internal: InternalParameters {
            source_date_epoch: 1_700_000_000,
            strict_reproducibility: true,
        },
        base_image: None,
        job_images: BTreeMap::new(),
        builder_id: "https://airlock.dev/trusted-builder/test".to_owned(),
        invocation_id: "inv-1".to_owned(),
        started_on: t,
        finished_on: t + chrono::Duration::seconds(1),
        ci_outputs: BTreeMap::new(),
        ci_log_digest: format!("sha256:{}", "c".repeat(64)),
        reproduced: true,
    })
    .expect("statement")
}

impl World {
    /// Writes one file in the environment work clone, commits and pushes; returns the commit.
    pub fn commit_file(&self, path: &str, text: &str) -> String {
        self.env.write(path, text);
        self.commit(&format!("change {path}"))
    }
}
