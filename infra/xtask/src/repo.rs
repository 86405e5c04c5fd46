//! Where things live in the repository. Located from the xtask's own manifest
//! rather than the current directory, so `cargo xtask` behaves the same from
//! any sub-directory.

use std::path::{Path, PathBuf};

pub struct Repo {
    pub root: PathBuf,
}

impl Repo {
    pub fn locate() -> Self {
        // infra/xtask -> infra -> root
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .ancestors()
            .nth(2)
            .expect("the xtask crate lives at <repo>/infra/xtask");
        Self {
            root: root.to_path_buf(),
        }
    }

    /// The SAM template both the local runner and cfn-lint read.
    pub fn template(&self) -> PathBuf {
        self.root.join("template.yaml")
    }

    /// package.json and requirements.txt of the emulators, and what they install.
    pub fn emulators(&self) -> PathBuf {
        self.root.join("infra/emulators")
    }

    pub fn node_modules(&self) -> PathBuf {
        self.emulators().join("node_modules")
    }

    pub fn venv(&self) -> PathBuf {
        self.emulators().join(".venv")
    }

    /// A program installed into the project venv (moto_server, cfn-lint, ...).
    pub fn venv_program(&self, name: &str) -> PathBuf {
        self.venv().join("bin").join(name)
    }

    /// Logs of the emulators of the latest run; under target/ so `cargo clean`
    /// removes them and git ignores them.
    pub fn stack_logs(&self) -> PathBuf {
        self.root.join("target/kassa-stack")
    }

    /// Machine-local state that must never be committed (.gitignore has /.kassa).
    pub fn kassa_dir(&self) -> PathBuf {
        self.root.join(".kassa")
    }

    /// The emulators' endpoints while `cargo xtask dev` runs, for commands that reach
    /// its stack from another terminal (`cargo xtask redrive`).
    pub fn dev_endpoints(&self) -> PathBuf {
        self.kassa_dir().join("dev-endpoints.json")
    }

    /// Where the local stack writes the mails it would have sent.
    pub fn mail_sink(&self) -> PathBuf {
        self.kassa_dir().join("mail")
    }
}
