//! The two JSON Web Tokens the providers want, signed with ring (already linked for
//! TLS) instead of a JWT crate: the format is three base64url parts, and all that
//! varies is the algorithm.
//!
//! - ES256 (APNs): ECDSA P-256 / SHA-256, the signature as the raw 64-byte `r || s`
//!   (ring's `FIXED` encoding is exactly what JWS wants).
//! - RS256 (FCM's OAuth2 assertion): RSASSA-PKCS1-v1_5 / SHA-256.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use serde_json::Value;

pub(crate) fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// The DER inside the first `-----BEGIN PRIVATE KEY-----` block of `pem`.
pub(crate) fn private_key_der(pem: &str) -> Result<Vec<u8>, String> {
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
    const END: &str = "-----END PRIVATE KEY-----";
    let start = pem
        .find(BEGIN)
        .ok_or("no -----BEGIN PRIVATE KEY----- block (a PKCS#8 PEM key is expected)")?;
    let body = pem.get(start + BEGIN.len()..).unwrap_or_default();
    let end = body.find(END).ok_or("no -----END PRIVATE KEY----- line")?;
    let body: String = body
        .get(..end)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(body)
        .map_err(|e| format!("bad base64 in the key: {e}"))
}

/// `base64url(header) . base64url(claims)`: the part that is signed.
fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// An ES256 signing key (an APNs `.p8` key).
pub(crate) struct Es256Key {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for Es256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key, even in debug output.
        f.debug_struct("Es256Key")
            .field("public_key", &b64url(self.key.public_key().as_ref()))
            .finish()
    }
}

impl Es256Key {
    /// From a PKCS#8 PEM EC P-256 key that includes its public key (Apple's `.p8`
    /// files and `openssl pkcs8 -topk8` output do).
    pub(crate) fn from_pem(pem: &str) -> Result<Es256Key, String> {
        let der = private_key_der(pem)?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|e| format!("not a PKCS#8 EC P-256 key: {e}"))?;
        Ok(Es256Key { key, rng })
    }

    pub(crate) fn sign_jwt(&self, header: &Value, claims: &Value) -> Result<String, String> {
        let input = signing_input(header, claims);
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| "ECDSA signing failed".to_owned())?;
        Ok(format!("{input}.{}", b64url(sig.as_ref())))
    }
}

/// An RS256 signing key (a service account's `private_key`).
pub(crate) struct Rs256Key {
    key: RsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for Rs256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rs256Key")
            .field("modulus_bits", &(self.key.public().modulus_len() * 8))
            .finish()
    }
}

impl Rs256Key {
    /// From a PKCS#8 PEM RSA key (2048 bits or more).
    pub(crate) fn from_pem(pem: &str) -> Result<Rs256Key, String> {
        let der = private_key_der(pem)?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("not a PKCS#8 RSA key: {e}"))?;
        Ok(Rs256Key {
            key,
            rng: SystemRandom::new(),
        })
    }

    pub(crate) fn sign_jwt(&self, header: &Value, claims: &Value) -> Result<String, String> {
        let input = signing_input(header, claims);
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, input.as_bytes(), &mut sig)
            .map_err(|_| "RSA signing failed".to_owned())?;
        Ok(format!("{input}.{}", b64url(&sig)))
    }
}

/// Unix time in whole seconds (0 if the clock is before 1970).
pub(crate) fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    fn pem(der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn es256_jwt_verifies_with_the_public_key() {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = Es256Key::from_pem(&pem(doc.as_ref())).unwrap();
        let header = serde_json::json!({"alg": "ES256", "kid": "K"});
        let jwt = key
            .sign_jwt(&header, &serde_json::json!({"iss": "T", "iat": 1}))
            .unwrap();
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        assert_eq!(sig.len(), 64, "JWS ES256 is raw r||s");
        let public = key.key.public_key().as_ref().to_vec();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public)
            .verify(input.as_bytes(), &sig)
            .unwrap();
        let head = URL_SAFE_NO_PAD
            .decode(input.split('.').next().unwrap())
            .unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&head).unwrap(), header);
    }

    #[test]
    fn keys_that_are_not_pkcs8_are_refused() {
        assert!(Es256Key::from_pem("nothing").is_err());
        assert!(Es256Key::from_pem(&pem(b"garbage")).is_err());
        assert!(Rs256Key::from_pem(&pem(b"garbage")).is_err());
        let e = private_key_der("-----BEGIN PRIVATE KEY-----\nAAA").unwrap_err();
        assert!(e.contains("END"), "{e}");
    }
}
