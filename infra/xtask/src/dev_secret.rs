//! The HS256 secret that local tokens are signed with and the local stack
//! verifies them with. It is per machine and never in the code: a secret in
//! the repository would be a secret every clone shares, and a habit that ends
//! up in production.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{bail, Context, Result};

use crate::repo::Repo;

/// The secret as the hex text stored in `<repo>/.kassa/dev-jwt-secret`; the
/// signing key is these ASCII bytes, exactly what `KASSA_JWT_SECRET` carries.
pub fn load_or_create(repo: &Repo) -> Result<String> {
    let path = repo.kassa_dir().join("dev-jwt-secret");
    fs::create_dir_all(repo.kassa_dir())
        .with_context(|| format!("creating {}", repo.kassa_dir().display()))?;

    // create_new, so two xtasks starting at once cannot each write a secret
    // and sign with different ones; the loser reads the winner's.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            let secret = random_hex(32)?;
            file.write_all(secret.as_bytes())
                .and_then(|()| file.write_all(b"\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(secret)
        }
        Err(error) if error.kind() == ErrorKind::AlreadyExists => {
            let secret = fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_owned();
            if secret.is_empty() {
                bail!("{} is empty; delete it to get a new one", path.display());
            }
            Ok(secret)
        }
        Err(error) => Err(error).with_context(|| format!("creating {}", path.display())),
    }
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut random = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut random))
        .context("reading /dev/urandom")?;
    Ok(random.iter().map(|byte| format!("{byte:02x}")).collect())
}
