//! Stripe's webhook signature scheme: the `Stripe-Signature` header is `t=<unix time>`
//! followed by one or more `v1=<hex HMAC-SHA256>` (several during a secret's rotation), each
//! computed over `"{t}.{raw body}"` with the endpoint's secret. Verification runs on the raw
//! bytes, before any parsing, and compares in constant time; a timestamp outside the
//! tolerance is refused so a captured delivery cannot be replayed later.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Stripe's libraries default to five minutes.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header has no timestamp or no v1 signature")]
    Malformed,
    #[error("the signature's timestamp is {age_secs} s from now; at most {tolerance_secs} s is accepted")]
    Stale { age_secs: i64, tolerance_secs: i64 },
    #[error("no v1 signature matches the payload")]
    Mismatch,
}

/// Checks `header` against `body` signed with `secret` at `now` (unix seconds).
pub fn verify(
    body: &[u8],
    header: Option<&str>,
    secret: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => {
                if let Ok(bytes) = hex::decode(sig) {
                    signatures.push(bytes);
                }
            }
            // v0 (test mode legacy) and unknown schemes are ignored, as Stripe's SDKs do.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    // The timestamp is the caller's, unauthenticated until the HMAC matches: any i64 may
    // come, so the age is computed without overflowing.
    if now.abs_diff(timestamp) > u64::try_from(tolerance_secs).unwrap_or(0) {
        return Err(SignatureError::Stale {
            age_secs: now.saturating_sub(timestamp),
            tolerance_secs,
        });
    }
    let mac = signed_payload_mac(secret, timestamp, body);
    if signatures
        .iter()
        .any(|sig| mac.clone().verify_slice(sig).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The header Stripe would send for `body` at `timestamp`: what tests and local tools use
/// to sign payloads exactly as Stripe does.
pub fn sign(body: &[u8], secret: &str, timestamp: i64) -> String {
    let mac = signed_payload_mac(secret, timestamp, body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

fn signed_payload_mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    const NOW: i64 = 1_795_300_000;

    fn check(body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
        verify(body, header, SECRET, NOW, DEFAULT_TOLERANCE_SECS)
    }

    #[test]
    fn a_valid_signature_passes() {
        let header = sign(BODY, SECRET, NOW - 10);
        assert_eq!(check(BODY, Some(&header)), Ok(()));
    }

    #[test]
    fn matches_an_independently_computed_hmac() {
        // HMAC-SHA256("whsec_example", "1700000000.{\"id\":\"evt_1\"}") from Python's hmac.
        let expected =
            "t=1700000000,v1=2f6f24854ba5c8d505c37e6fc0a06fc74456f1a4042208e7acdd4bd0bdbd599e";
        let body = br#"{"id":"evt_1"}"#;
        assert_eq!(sign(body, "whsec_example", 1_700_000_000), expected);
        assert_eq!(
            verify(body, Some(expected), "whsec_example", 1_700_000_100, 300),
            Ok(())
        );
    }

    #[test]
    fn a_tampered_body_fails() {
        let header = sign(BODY, SECRET, NOW);
        let tampered = br#"{"id":"evt_1","type":"payment_intent.canceled"}"#;
        assert_eq!(
            check(tampered, Some(&header)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_wrong_secret_fails() {
        let header = sign(BODY, "whsec_other", NOW);
        assert_eq!(check(BODY, Some(&header)), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_stale_timestamp_fails_even_when_signed_correctly() {
        let header = sign(BODY, SECRET, NOW - 301);
        assert_eq!(
            check(BODY, Some(&header)),
            Err(SignatureError::Stale {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
    }

    #[test]
    fn a_missing_or_malformed_header_fails() {
        assert_eq!(check(BODY, None), Err(SignatureError::Missing));
        assert_eq!(check(BODY, Some("")), Err(SignatureError::Malformed));
        assert_eq!(check(BODY, Some("v1=abcd")), Err(SignatureError::Malformed));
        assert_eq!(
            check(BODY, Some(&format!("t={NOW}"))),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_timestamp_at_the_ends_of_the_range_is_stale_not_a_panic() {
        for t in [i64::MIN, i64::MIN + 1, -1, i64::MAX] {
            let header = format!("t={t},v1={}", "00".repeat(32));
            assert!(
                matches!(
                    check(BODY, Some(&header)),
                    Err(SignatureError::Stale { .. })
                ),
                "t={t}"
            );
        }
        let header = format!("t={},v1={}", i64::MIN, "00".repeat(32));
        assert!(matches!(
            verify(BODY, Some(&header), SECRET, i64::MAX, i64::MAX),
            Err(SignatureError::Stale { .. })
        ));
    }

    proptest::proptest! {
        /// Whatever an unauthenticated caller puts in the header, verification answers
        /// (and never panics); only a correct signature passes.
        #[test]
        fn any_header_is_answered_without_a_panic(
            header in "(t=-?[0-9]{0,20}|v1=[0-9a-f]{0,64}|v0=[a-z0-9]{0,8}|\\PC{0,12}|,| ){0,6}",
            now in proptest::prelude::any::<i64>(),
            tolerance in proptest::prelude::any::<i64>(),
        ) {
            let answer = verify(BODY, Some(&header), SECRET, now, tolerance);
            proptest::prop_assert_ne!(answer, Ok(()));
        }

        #[test]
        fn any_timestamp_is_answered_without_a_panic(
            t in proptest::prelude::any::<i64>(),
            now in proptest::prelude::any::<i64>(),
        ) {
            let header = sign(BODY, SECRET, t);
            let answer = verify(BODY, Some(&header), SECRET, now, DEFAULT_TOLERANCE_SECS);
            let fresh = i128::from(now).abs_diff(i128::from(t)) <= DEFAULT_TOLERANCE_SECS as u128;
            proptest::prop_assert_eq!(answer.is_ok(), fresh);
        }
    }

    #[test]
    fn any_of_several_v1_signatures_may_match() {
        let good = sign(BODY, SECRET, NOW);
        let good_sig = good.split("v1=").nth(1).unwrap();
        let bad_sig = "00".repeat(32);
        let header = format!("t={NOW},v1={bad_sig},v0=ffff,v1={good_sig}");
        assert_eq!(check(BODY, Some(&header)), Ok(()));
        let header = format!("t={NOW},v1={bad_sig},v1={bad_sig}");
        assert_eq!(check(BODY, Some(&header)), Err(SignatureError::Mismatch));
    }
}
