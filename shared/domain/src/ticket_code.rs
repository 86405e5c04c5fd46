//! A ticket's code: what the door scans, verifiable offline with kassa's published public
//! key, so a scanner without a network still refuses a forged or altered ticket.
//!
//! It carries only what the door needs to admit someone: the ticket, its concert and its
//! level. Nothing about the buyer (a code is shown, photographed and forwarded). Format:
//! base64url without padding of `1 | ticket id (16) | concert id (16) | level length (1) |
//! level id | Ed25519 signature (64)` over everything before the signature; about 150
//! characters for a usual level id, which fits a QR code comfortably.

use base64::engine::general_purpose::STANDARD;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey, SIGNATURE_LENGTH};
use uuid::Uuid;

/// The format's first byte: a new format gets a new number, old codes stay readable.
const VERSION: u8 = 1;

/// What a code says, once its signature holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub ticket_id: Uuid,
    pub concert_id: Uuid,
    pub level_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("the code is not a kassa ticket code")]
    Malformed,
    #[error("the code's signature does not hold: it was altered or not issued by kassa")]
    Forged,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the ticket signing key must be the base64 of 32 bytes")]
pub struct KeyError;

/// Signs codes with the private key kassa keeps in its configuration.
#[derive(Clone)]
pub struct CodeSigner {
    key: SigningKey,
}

impl std::fmt::Debug for CodeSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The seed never reaches a log.
        f.debug_struct("CodeSigner")
            .field("public_key", &self.verifier().to_base64())
            .finish()
    }
}

impl CodeSigner {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The key as configured (`KASSA_TICKET_SIGNING_KEY`): standard or url-safe base64 of
    /// the 32-byte seed.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| KeyError)?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| KeyError)?;
        Ok(Self::from_seed(seed))
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let mut bytes = message(claims);
        let signature = self.key.sign(&bytes);
        bytes.extend_from_slice(&signature.to_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn verifier(&self) -> CodeVerifier {
        CodeVerifier {
            key: self.key.verifying_key(),
        }
    }
}

/// Verifies codes with the public key: what a door scanner holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeVerifier {
    key: VerifyingKey,
}

impl CodeVerifier {
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| KeyError)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError)?;
        Ok(Self {
            key: VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError)?,
        })
    }

    /// The public key as published: base64url of its 32 bytes.
    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.to_bytes())
    }

    /// What `code` says, if kassa signed it as it is.
    pub fn verify(&self, code: &str) -> Result<Claims, CodeError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(code.trim())
            .map_err(|_| CodeError::Malformed)?;
        if bytes.len() < 34 + SIGNATURE_LENGTH || bytes[0] != VERSION {
            return Err(CodeError::Malformed);
        }
        let (signed, signature) = bytes.split_at(bytes.len() - SIGNATURE_LENGTH);
        let signature = Signature::from_slice(signature).map_err(|_| CodeError::Malformed)?;
        // The signature first: nothing of an unsigned code is read, let alone believed.
        self.key
            .verify_strict(signed, &signature)
            .map_err(|_| CodeError::Forged)?;
        claims(signed).ok_or(CodeError::Malformed)
    }
}

fn message(claims: &Claims) -> Vec<u8> {
    let level = claims.level_id.as_bytes();
    let mut bytes = Vec::with_capacity(34 + level.len() + SIGNATURE_LENGTH);
    bytes.push(VERSION);
    bytes.extend_from_slice(claims.ticket_id.as_bytes());
    bytes.extend_from_slice(claims.concert_id.as_bytes());
    // Level ids are at most 32 bytes (`concert::MAX_LEVEL_ID_LEN`).
    bytes.push(level.len().min(255) as u8);
    bytes.extend_from_slice(&level[..level.len().min(255)]);
    bytes
}

fn claims(signed: &[u8]) -> Option<Claims> {
    let ticket_id = Uuid::from_slice(signed.get(1..17)?).ok()?;
    let concert_id = Uuid::from_slice(signed.get(17..33)?).ok()?;
    let length = usize::from(*signed.get(33)?);
    let level = signed.get(34..)?;
    if level.len() != length {
        return None;
    }
    Some(Claims {
        ticket_id,
        concert_id,
        level_id: String::from_utf8(level.to_vec()).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            ticket_id: Uuid::from_u128(1),
            concert_id: Uuid::from_u128(2),
            level_id: "golden-circle".into(),
        }
    }

    #[test]
    fn a_signed_code_verifies_with_the_published_key_and_says_what_was_signed() {
        let signer = CodeSigner::from_seed([7; 32]);
        let code = signer.sign(&claims());
        let published = signer.verifier().to_base64();
        let door = CodeVerifier::from_base64(&published).unwrap();
        assert_eq!(door.verify(&code), Ok(claims()));
        assert!(code.len() < 200, "{} characters", code.len());
    }

    #[test]
    fn a_flipped_bit_anywhere_makes_the_code_forged_or_unreadable() {
        let signer = CodeSigner::from_seed([7; 32]);
        let code = URL_SAFE_NO_PAD.decode(signer.sign(&claims())).unwrap();
        for at in 0..code.len() {
            let mut flipped = code.clone();
            flipped[at] ^= 0x01;
            let verdict = signer.verifier().verify(&URL_SAFE_NO_PAD.encode(&flipped));
            assert!(verdict.is_err(), "bit flipped at byte {at} verified");
        }
    }

    #[test]
    fn a_code_signed_with_another_key_is_forged() {
        let code = CodeSigner::from_seed([8; 32]).sign(&claims());
        let ours = CodeSigner::from_seed([7; 32]).verifier();
        assert_eq!(ours.verify(&code), Err(CodeError::Forged));
    }

    #[test]
    fn text_that_is_no_code_is_malformed() {
        let ours = CodeSigner::from_seed([7; 32]).verifier();
        for text in ["", "not a code", "AAAA", "%%%"] {
            assert_eq!(ours.verify(text), Err(CodeError::Malformed), "{text}");
        }
    }

    #[test]
    fn the_configured_key_is_the_base64_of_a_32_byte_seed() {
        let seed = STANDARD.encode([7u8; 32]);
        let signer = CodeSigner::from_base64(&seed).unwrap();
        assert_eq!(signer.verifier(), CodeSigner::from_seed([7; 32]).verifier());
        assert!(CodeSigner::from_base64("c2hvcnQ=").is_err());
        assert!(!format!("{signer:?}").contains(&seed));
    }
}
