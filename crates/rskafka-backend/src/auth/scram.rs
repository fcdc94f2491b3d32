//! The client side of SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), without
//! channel binding, as Kafka speaks it: the password is used as its UTF-8 bytes (Kafka
//! applies no SASLprep either) and the user name is escaped (`,` and `=`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use super::AuthError;

/// The hash of a SCRAM mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScramHash {
    Sha256,
    Sha512,
}

/// Base64 of the GS2 header `n,,` (no channel binding, no authzid).
const GS2_HEADER_B64: &str = "biws";

/// Bytes of random client nonce (base64-encoded on the wire).
const NONCE_BYTES: usize = 24;

/// Kafka refuses fewer iterations; so do we (a server offering fewer is not Kafka's).
const MIN_ITERATIONS: u32 = 4096;

/// A SCRAM exchange before the server's first message.
pub(crate) struct ScramClient {
    hash: ScramHash,
    password: Vec<u8>,
    nonce: String,
    client_first_bare: String,
}

/// A SCRAM exchange waiting for the server's final message.
pub(crate) struct ScramFinal {
    hash: ScramHash,
    server_signature: Vec<u8>,
}

impl ScramClient {
    /// Starts an exchange with a fresh random nonce.
    pub(crate) fn new(hash: ScramHash, user: &str, password: &str) -> Result<Self, AuthError> {
        let mut raw = [0_u8; NONCE_BYTES];
        getrandom::getrandom(&mut raw)
            .map_err(|e| AuthError::Internal(format!("no random nonce: {e}")))?;
        Ok(Self::with_nonce(hash, user, password, &B64.encode(raw)))
    }

    /// Starts an exchange with the given nonce (for the RFC test vectors).
    pub(crate) fn with_nonce(hash: ScramHash, user: &str, password: &str, nonce: &str) -> Self {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        Self {
            hash,
            password: password.as_bytes().to_vec(),
            nonce: nonce.to_owned(),
            client_first_bare: format!("n={user},r={nonce}"),
        }
    }

    /// The client-first message.
    pub(crate) fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Checks the server-first message and computes the client-final one (with the
    /// proof).
    pub(crate) fn client_final(
        self,
        server_first: &[u8],
    ) -> Result<(String, ScramFinal), AuthError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| invalid("server-first message is not UTF-8"))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for (i, attr) in server_first.split(',').enumerate() {
            match attr.split_once('=') {
                Some(("m", _)) if i == 0 => return Err(invalid("mandatory extension requested")),
                Some(("e", e)) => return Err(invalid(&format!("server error: {e}"))),
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = Some(v),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(invalid("server-first message lacks r, s or i"));
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(invalid("server nonce does not extend the client nonce"));
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| invalid("salt is not base64"))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| invalid("iteration count is not a number"))?;
        if iterations < MIN_ITERATIONS {
            return Err(invalid(&format!(
                "iteration count {iterations} is below {MIN_ITERATIONS}"
            )));
        }
        let without_proof = format!("c={GS2_HEADER_B64},r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let keys = Keys::derive(self.hash, &self.password, &salt, iterations)?;
        let client_signature = hmac(self.hash, &keys.stored_key, auth_message.as_bytes())?;
        let proof: Vec<u8> = keys
            .client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_signature = hmac(self.hash, &keys.server_key, auth_message.as_bytes())?;
        let client_final = format!("{without_proof},p={}", B64.encode(proof));
        Ok((
            client_final,
            ScramFinal {
                hash: self.hash,
                server_signature,
            },
        ))
    }
}

impl ScramFinal {
    /// Checks the server-final message: the server must prove it knows the password.
    pub(crate) fn verify(&self, server_final: &[u8]) -> Result<(), AuthError> {
        let server_final = std::str::from_utf8(server_final)
            .map_err(|_| invalid("server-final message is not UTF-8"))?;
        let first = server_final.split(',').next().unwrap_or_default();
        match first.split_once('=') {
            Some(("v", v)) => {
                let got = B64
                    .decode(v)
                    .map_err(|_| invalid("verifier is not base64"))?;
                if got == self.server_signature {
                    Ok(())
                } else {
                    Err(AuthError::ServerSignatureMismatch {
                        mechanism: mechanism_name(self.hash),
                    })
                }
            }
            Some(("e", e)) => Err(AuthError::Rejected {
                mechanism: mechanism_name(self.hash),
                message: e.to_owned(),
            }),
            _ => Err(invalid("server-final message lacks v")),
        }
    }
}

/// The keys derived from the salted password.
pub(crate) struct Keys {
    pub(crate) client_key: Vec<u8>,
    pub(crate) stored_key: Vec<u8>,
    pub(crate) server_key: Vec<u8>,
}

impl Keys {
    /// SaltedPassword = Hi(password, salt, i), and the keys derived from it.
    pub(crate) fn derive(
        hash: ScramHash,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, AuthError> {
        let salted = hi(hash, password, salt, iterations)?;
        let client_key = hmac(hash, &salted, b"Client Key")?;
        Ok(Self {
            stored_key: h(hash, &client_key),
            server_key: hmac(hash, &salted, b"Server Key")?,
            client_key,
        })
    }
}

pub(crate) fn mechanism_name(hash: ScramHash) -> &'static str {
    match hash {
        ScramHash::Sha256 => "SCRAM-SHA-256",
        ScramHash::Sha512 => "SCRAM-SHA-512",
    }
}

fn invalid(message: &str) -> AuthError {
    AuthError::InvalidServerMessage(message.to_owned())
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Result<Vec<u8>, AuthError> {
    let mut m = <M as Mac>::new_from_slice(key)
        .map_err(|e| AuthError::Internal(format!("HMAC key: {e}")))?;
    m.update(data);
    Ok(m.finalize().into_bytes().to_vec())
}

/// HMAC(key, data).
pub(crate) fn hmac(hash: ScramHash, key: &[u8], data: &[u8]) -> Result<Vec<u8>, AuthError> {
    match hash {
        ScramHash::Sha256 => mac::<Hmac<Sha256>>(key, data),
        ScramHash::Sha512 => mac::<Hmac<Sha512>>(key, data),
    }
}

/// H(data).
pub(crate) fn h(hash: ScramHash, data: &[u8]) -> Vec<u8> {
    match hash {
        ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        ScramHash::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// Hi(): PBKDF2 with HMAC, one hash length of output.
fn hi(hash: ScramHash, password: &[u8], salt: &[u8], i: u32) -> Result<Vec<u8>, AuthError> {
    let pbkdf = |out: &mut [u8]| match hash {
        ScramHash::Sha256 => pbkdf2::pbkdf2::<Hmac<Sha256>>(password, salt, i, out),
        ScramHash::Sha512 => pbkdf2::pbkdf2::<Hmac<Sha512>>(password, salt, i, out),
    };
    let mut out = vec![
        0_u8;
        match hash {
            ScramHash::Sha256 => 32,
            ScramHash::Sha512 => 64,
        }
    ];
    pbkdf(&mut out).map_err(|e| AuthError::Internal(format!("PBKDF2: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677, section 3.
    #[test]
    fn scram_sha_256_matches_the_rfc_7677_test_vector() {
        let c =
            ScramClient::with_nonce(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(c.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let (client_final, fin) = c.client_final(server_first.as_bytes()).unwrap();
        assert_eq!(
            client_final,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        fin.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(matches!(
            fin.verify(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(AuthError::ServerSignatureMismatch { .. })
        ));
        assert!(matches!(
            fin.verify(b"e=invalid-proof"),
            Err(AuthError::Rejected { .. })
        ));
    }

    /// RFC 5802, section 5 (SCRAM-SHA-1 there): only the message syntax applies, so
    /// check user-name escaping and the nonce and iteration checks.
    #[test]
    fn names_are_escaped_and_bad_server_messages_refused() {
        let c = ScramClient::with_nonce(ScramHash::Sha512, "a,b=c", "pw", "abc");
        assert_eq!(c.client_first(), "n,,n=a=2Cb=3Dc,r=abc");
        let bad = |server_first: &str| {
            let c = ScramClient::with_nonce(ScramHash::Sha512, "u", "pw", "abc");
            c.client_final(server_first.as_bytes()).err()
        };
        assert!(bad("r=xyz123,s=QUJD,i=4096").is_some(), "foreign nonce");
        assert!(bad("r=abc,s=QUJD,i=4096").is_some(), "nonce not extended");
        assert!(bad("r=abcdef,s=QUJD,i=10").is_some(), "too few iterations");
        assert!(bad("r=abcdef,s=!!,i=4096").is_some(), "salt not base64");
        assert!(
            bad("m=ext,r=abcdef,s=QUJD,i=4096").is_some(),
            "mandatory ext"
        );
        assert!(bad("r=abcdef,s=QUJD,i=4096").is_none());
    }

    #[test]
    fn random_nonces_differ() {
        let a = ScramClient::new(ScramHash::Sha256, "u", "p").unwrap();
        let b = ScramClient::new(ScramHash::Sha256, "u", "p").unwrap();
        assert_ne!(a.client_first(), b.client_first());
    }
}
