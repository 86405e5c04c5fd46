//! Coupon codes as buyers type them and as kassa keeps them. A code is matched without
//! regard to case or surrounding blanks, so `summer-25 ` and `SUMMER-25` are one code;
//! kassa keeps the normalized form, unique per deployment.
//!
//! Generated codes (a campaign's single-use codes) come from an alphabet without the
//! characters people misread (0/O, 1/I/L, 5/S, 2/Z, 8/B): 24 symbols, so 10 of them carry
//! about 45 bits, out of reach of guessing at the rate the abuse rules allow.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The characters a generated code is made of.
pub const ALPHABET: &[u8; 24] = b"ACDEFGHJKMNPQRTUVWXY3479";

/// The shortest generated code.
pub const MIN_GENERATED: usize = 8;

const MIN_LEN: usize = 3;
const MAX_LEN: usize = 32;

#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct CouponCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("a coupon code has {MIN_LEN} to {MAX_LEN} letters, digits or dashes")]
    Invalid,
    #[error("a generated code has at least {MIN_GENERATED} characters")]
    TooShort,
}

impl CouponCode {
    /// The code as kassa keeps it: trimmed and upper-cased; letters A–Z, digits and inner
    /// dashes only.
    pub fn parse(typed: &str) -> Result<Self, CodeError> {
        let code = typed.trim().to_ascii_uppercase();
        let valid = (MIN_LEN..=MAX_LEN).contains(&code.len())
            && code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
            && !code.starts_with('-')
            && !code.ends_with('-');
        if valid {
            Ok(Self(code))
        } else {
            Err(CodeError::Invalid)
        }
    }

    /// A code of `length` symbols of [`ALPHABET`], drawn from `random` (one byte per
    /// symbol, rejection-sampled so every symbol is equally likely). Pure: the caller
    /// brings the randomness, so the same bytes give the same code.
    pub fn generate(length: usize, random: &mut impl FnMut() -> u8) -> Result<Self, CodeError> {
        if length < MIN_GENERATED {
            return Err(CodeError::TooShort);
        }
        if length > MAX_LEN {
            return Err(CodeError::Invalid);
        }
        // 240 is the largest multiple of 24 a byte holds: bytes above it would favour the
        // first symbols.
        let limit = (u8::MAX as usize + 1) / ALPHABET.len() * ALPHABET.len();
        let mut code = String::with_capacity(length);
        while code.len() < length {
            let byte = usize::from(random());
            if byte < limit {
                code.push(char::from(ALPHABET[byte % ALPHABET.len()]));
            }
        }
        Ok(Self(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CouponCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_whatever_the_case_and_blanks() {
        assert_eq!(
            CouponCode::parse(" summer-25 ").unwrap(),
            CouponCode::parse("SUMMER-25").unwrap()
        );
        assert_eq!(
            CouponCode::parse("Summer-25").unwrap().as_str(),
            "SUMMER-25"
        );
    }

    #[test]
    fn refuses_what_is_not_a_code() {
        for typed in [
            "",
            "ab",
            "-ABC",
            "ABC-",
            "SUMMER 25",
            "ÉTÉ25",
            "A".repeat(33).as_str(),
            "25%OFF",
        ] {
            assert_eq!(
                CouponCode::parse(typed),
                Err(CodeError::Invalid),
                "{typed:?}"
            );
        }
    }

    #[test]
    fn generated_codes_use_only_unmistakable_symbols_and_parse_back() {
        let mut seed = 7u32;
        let mut random = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as u8
        };
        for _ in 0..200 {
            let code = CouponCode::generate(10, &mut random).unwrap();
            assert_eq!(code.as_str().len(), 10);
            assert!(
                code.as_str().bytes().all(|b| ALPHABET.contains(&b)),
                "{code}"
            );
            assert!(!code
                .as_str()
                .contains(['0', 'O', '1', 'I', 'L', '5', 'S', '2', 'Z', '8', 'B']));
            assert_eq!(CouponCode::parse(code.as_str()).unwrap(), code);
        }
        assert_eq!(
            CouponCode::generate(7, &mut random),
            Err(CodeError::TooShort)
        );
    }

    #[test]
    fn bytes_past_the_last_whole_alphabet_are_drawn_again() {
        // 240..=255 would favour the first 16 symbols; they are skipped.
        let mut bytes = [250u8, 255, 240, 0, 23, 24, 1, 2, 3, 4, 5].into_iter();
        let code = CouponCode::generate(8, &mut || bytes.next().unwrap()).unwrap();
        assert_eq!(code.as_str(), "A9ACDEFG");
    }
}
