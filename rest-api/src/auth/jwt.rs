//! JSON Web Tokens as OIDC issuers sign them (RFC 7519, RFC 7515): the compact form
//! `header.claims.signature`, each part base64url without padding. Only asymmetric
//! signatures are accepted, RS256 (RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048 bits or
//! more) and ES256 (ECDSA P-256 with SHA-256); `none` and every HMAC algorithm are refused
//! before any key is looked at, so a token "signed" with the issuer's public key as an HMAC
//! secret is refused. Signatures are checked with ring.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Seconds a token's `exp` and `nbf` are stretched by (clocks differ).
pub const LEEWAY_SECS: i64 = 60;

/// A public key of the issuer's key set (JWKS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    key: Key,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// Modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed P-256 point `04 || x || y`.
    P256(Vec<u8>),
}

impl Key {
    fn alg(&self) -> &'static str {
        match self {
            Key::Rsa { .. } => "RS256",
            Key::P256(_) => "ES256",
        }
    }
}

#[derive(Debug, Deserialize)]
struct JwkSet {
    keys: Vec<Value>,
}

/// The signing keys of a JWKS document that floe can use (RSA, and EC on P-256); others
/// (encryption keys, other curves, symmetric keys) are skipped.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<Jwk>, String> {
    let set: JwkSet =
        serde_json::from_slice(body).map_err(|e| format!("the key set is not JSON: {e}"))?;
    let text = |k: &Value, f: &str| k.get(f).and_then(Value::as_str).map(str::to_owned);
    let bytes = |k: &Value, f: &str| {
        text(k, f).and_then(|v| URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).ok())
    };
    let mut keys = Vec::new();
    for k in &set.keys {
        if text(k, "use").is_some_and(|u| u != "sig") {
            continue;
        }
        let alg = text(k, "alg");
        let key = match text(k, "kty").as_deref() {
            Some("RSA") if alg.as_deref().is_none_or(|a| a == "RS256") => {
                match (bytes(k, "n"), bytes(k, "e")) {
                    (Some(n), Some(e)) => Key::Rsa { n, e },
                    _ => continue,
                }
            }
            Some("EC")
                if text(k, "crv").as_deref() == Some("P-256")
                    && alg.as_deref().is_none_or(|a| a == "ES256") =>
            {
                match (bytes(k, "x"), bytes(k, "y")) {
                    (Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                        let mut point = Vec::with_capacity(65);
                        point.push(4);
                        point.extend_from_slice(&x);
                        point.extend_from_slice(&y);
                        Key::P256(point)
                    }
                    _ => continue,
                }
            }
            _ => continue,
        };
        keys.push(Jwk {
            kid: text(k, "kid"),
            key,
        });
    }
    Ok(keys)
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a JWT (header.claims.signature, base64url)")]
    Malformed,
    #[error("the token is signed with {0:?}; floe accepts RS256 and ES256 only")]
    Algorithm(String),
    /// No key of the set has this id (the set may have rotated: fetch it again).
    #[error("the token is signed with a key the issuer does not list ({0})")]
    UnknownKey(String),
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYet,
    #[error("the token has no expiry (exp)")]
    NoExpiry,
    #[error("the token was issued by {0:?}, not by this server's issuer")]
    Issuer(String),
    #[error("the token is not meant for this server (aud does not name {0:?})")]
    Audience(String),
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// What a verified token says.
#[derive(Debug, Clone)]
pub struct Verified {
    pub claims: Map<String, Value>,
    /// `exp`, in seconds since the epoch.
    pub expires: i64,
}

/// What a token must say to be accepted.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    /// Seconds since the epoch.
    pub now: i64,
}

/// The key id a token names, once its header parses and names an accepted algorithm (so
/// a forged `alg` never causes a fetch of the key set).
pub fn key_id(token: &str) -> Result<Option<String>, JwtError> {
    let header = header(token)?;
    if header.alg != "RS256" && header.alg != "ES256" {
        return Err(JwtError::Algorithm(header.alg));
    }
    Ok(header.kid)
}

fn header(token: &str) -> Result<Header, JwtError> {
    let head = token.split('.').next().ok_or(JwtError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// Checks a token's algorithm, signature (against `keys`) and claims.
pub fn verify(token: &str, keys: &[Jwk], expect: &Expect<'_>) -> Result<Verified, JwtError> {
    let mut parts = token.split('.');
    let (Some(head), Some(body), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header = header(token)?;
    if header.alg != "RS256" && header.alg != "ES256" {
        return Err(JwtError::Algorithm(header.alg));
    }
    // The key the token names; a token without a key id is tried against every key of
    // its algorithm (a set mid-rotation holds two).
    let candidates: Vec<&Jwk> = keys
        .iter()
        .filter(|k| k.key.alg() == header.alg)
        .filter(|k| match (&header.kid, &k.kid) {
            (Some(want), Some(have)) => want == have,
            (None, _) => true,
            (Some(_), None) => false,
        })
        .collect();
    if candidates.is_empty() {
        return Err(JwtError::UnknownKey(header.kid.clone().unwrap_or_default()));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| JwtError::Malformed)?;
    let message = &token.as_bytes()[..head.len() + 1 + body.len()];
    let signed_by = |key: &Jwk| match &key.key {
        Key::Rsa { n, e } => RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, &signature)
            .is_ok(),
        Key::P256(point) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
            .verify(message, &signature)
            .is_ok(),
    };
    if !candidates.into_iter().any(signed_by) {
        return Err(JwtError::Signature);
    }
    let claims: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    let number = |name: &str| claims.get(name).and_then(Value::as_f64).map(|v| v as i64);
    let expires = number("exp").ok_or(JwtError::NoExpiry)?;
    if expect.now > expires.saturating_add(LEEWAY_SECS) {
        return Err(JwtError::Expired);
    }
    if number("nbf").is_some_and(|nbf| expect.now.saturating_add(LEEWAY_SECS) < nbf) {
        return Err(JwtError::NotYet);
    }
    let issuer = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    if issuer != expect.issuer {
        return Err(JwtError::Issuer(issuer.to_owned()));
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == expect.audience,
        Some(Value::Array(all)) => all.iter().any(|a| a.as_str() == Some(expect.audience)),
        _ => false,
    };
    if !audience_ok {
        return Err(JwtError::Audience(expect.audience.to_owned()));
    }
    Ok(Verified { claims, expires })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    struct Signer {
        pair: EcdsaKeyPair,
        kid: &'static str,
    }

    impl Signer {
        fn new(kid: &'static str) -> Signer {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            Signer { pair, kid }
        }

        fn jwks(&self) -> Vec<u8> {
            let point = self.pair.public_key().as_ref();
            serde_json::to_vec(&serde_json::json!({"keys": [
                {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
                {"kty": "EC", "crv": "P-256", "use": "sig", "kid": self.kid,
                 "x": b64(&point[1..33]), "y": b64(&point[33..65])},
            ]}))
            .unwrap()
        }

        fn sign(&self, header: Value, claims: Value) -> String {
            let message = format!(
                "{}.{}",
                b64(&serde_json::to_vec(&header).unwrap()),
                b64(&serde_json::to_vec(&claims).unwrap())
            );
            let sig = self
                .pair
                .sign(&SystemRandom::new(), message.as_bytes())
                .unwrap();
            format!("{message}.{}", b64(sig.as_ref()))
        }
    }

    const NOW: i64 = 1_800_000_000;

    fn expect() -> Expect<'static> {
        Expect {
            issuer: "https://idp.example",
            audience: "floe",
            now: NOW,
        }
    }

    fn claims(extra: Value) -> Value {
        let mut c = serde_json::json!({"iss": "https://idp.example", "aud": ["other", "floe"],
            "sub": "alice", "exp": NOW + 300});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    }

    #[test]
    fn a_token_signed_by_a_listed_key_with_the_right_claims_verifies() {
        let s = Signer::new("k1");
        let keys = parse_jwks(&s.jwks()).unwrap();
        assert_eq!(keys.len(), 1, "the symmetric key is skipped");
        let header = serde_json::json!({"alg": "ES256", "kid": "k1"});
        let ok = verify(
            &s.sign(header.clone(), claims(serde_json::json!({}))),
            &keys,
            &expect(),
        )
        .unwrap();
        assert_eq!(ok.claims["sub"], "alice");
        assert_eq!(ok.expires, NOW + 300);
        // Within the leeway on both ends.
        let late = claims(serde_json::json!({"exp": NOW - 30, "nbf": NOW + 30}));
        verify(&s.sign(header, late), &keys, &expect()).unwrap();
    }

    #[test]
    fn every_way_a_token_can_be_wrong_is_refused_with_its_reason() {
        let s = Signer::new("k1");
        let keys = parse_jwks(&s.jwks()).unwrap();
        let h = serde_json::json!({"alg": "ES256", "kid": "k1"});
        let check = |h: &Value, c: Value| verify(&s.sign(h.clone(), claims(c)), &keys, &expect());
        use serde_json::json;
        assert_eq!(
            check(&h, json!({"exp": NOW - 61})).unwrap_err(),
            JwtError::Expired
        );
        assert_eq!(
            check(&h, json!({"nbf": NOW + 61})).unwrap_err(),
            JwtError::NotYet
        );
        assert!(matches!(
            check(&h, json!({"iss": "https://evil"})).unwrap_err(),
            JwtError::Issuer(_)
        ));
        assert!(matches!(
            check(&h, json!({"aud": "other"})).unwrap_err(),
            JwtError::Audience(_)
        ));
        let mut no_exp = claims(json!({}));
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            verify(&s.sign(h.clone(), no_exp), &keys, &expect()).unwrap_err(),
            JwtError::NoExpiry
        );
        for alg in ["none", "HS256", "RS512"] {
            let t = s.sign(json!({"alg": alg, "kid": "k1"}), claims(json!({})));
            assert_eq!(
                verify(&t, &keys, &expect()).unwrap_err(),
                JwtError::Algorithm(alg.into())
            );
        }
        // Without a key id, every key of the algorithm is tried.
        let second = Signer::new("k9");
        let mut both = keys.clone();
        both.extend(parse_jwks(&second.jwks()).unwrap());
        let t = second.sign(json!({"alg": "ES256"}), claims(json!({})));
        verify(&t, &both, &expect()).unwrap();
        assert_eq!(
            verify(&t, &keys, &expect()).unwrap_err(),
            JwtError::Signature
        );
        let t = s.sign(json!({"alg": "ES256", "kid": "k2"}), claims(json!({})));
        assert_eq!(
            verify(&t, &keys, &expect()).unwrap_err(),
            JwtError::UnknownKey("k2".into())
        );
        // Another key's signature, and a tampered body.
        let other = Signer::new("k1");
        let t = other.sign(h.clone(), claims(json!({})));
        assert_eq!(
            verify(&t, &keys, &expect()).unwrap_err(),
            JwtError::Signature
        );
        let t = s.sign(h.clone(), claims(json!({})));
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = b64(&serde_json::to_vec(&claims(json!({"sub": "root"}))).unwrap());
        parts[1] = &forged;
        assert_eq!(
            verify(&parts.join("."), &keys, &expect()).unwrap_err(),
            JwtError::Signature
        );
        for junk in ["", "a.b", "a.b.c.d", "!!.??.**"] {
            assert_eq!(
                verify(junk, &keys, &expect()).unwrap_err(),
                JwtError::Malformed,
                "{junk}"
            );
        }
    }
}
