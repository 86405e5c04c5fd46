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
    load_or_create_file(repo, "dev-jwt-secret", || random_hex(32))
}

/// The seed local ticket codes are signed with, base64 of 32 random bytes, stored in
/// `<repo>/.kassa/dev-ticket-signing-key`: what `KASSA_TICKET_SIGNING_KEY` carries. Kept
/// per checkout for the same reason as the JWT secret, and so codes mailed in one `cargo
/// xtask dev` session still verify in the next.
pub fn ticket_signing_key(repo: &Repo) -> Result<String> {
    load_or_create_file(repo, "dev-ticket-signing-key", || {
        random_bytes(32).map(|bytes| base64(&bytes))
    })
}

fn load_or_create_file(
    repo: &Repo,
    name: &str,
    make: impl FnOnce() -> Result<String>,
) -> Result<String> {
    let path = repo.kassa_dir().join(name);
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
            let secret = make()?;
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

fn random_bytes(bytes: usize) -> Result<Vec<u8>> {
    let mut random = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut random))
        .context("reading /dev/urandom")?;
    Ok(random)
}

fn random_hex(bytes: usize) -> Result<String> {
    Ok(random_bytes(bytes)?
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// Standard base64 with padding; xtask stays free of an encoding crate for 32 bytes.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                text.push('=');
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(super::base64(b"Man"), "TWFu");
        assert_eq!(super::base64(b"Ma"), "TWE=");
        assert_eq!(super::base64(b"M"), "TQ==");
        assert_eq!(super::base64(&[0xff; 32]).len(), 44);
    }
}
