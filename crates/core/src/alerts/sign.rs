//! Webhook signatures: `Meterline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>">`, keyed by METERLINE_WEBHOOK_SECRET. The secret lives only in this process's
//! memory: never printed, logged or stored.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{Error, Result};

/// The environment variable the webhook signing secret is read from.
pub const SECRET_ENV: &str = "METERLINE_WEBHOOK_SECRET";

/// The signing secret. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("Secret([hidden])")
    }
}

impl Secret {
    /// From the environment: `Ok(None)` when unset; an empty value is refused.
    pub fn from_env() -> Result<Option<Secret>> {
        match std::env::var_os(SECRET_ENV) {
            None => Ok(None),
            Some(value) if value.is_empty() => Err(Error::AlertConfig(format!(
                "{SECRET_ENV} is set but empty; set it to a long random string \
                 (e.g. `openssl rand -hex 32`) and give the same one to your receiver"
            ))),
            Some(value) => Ok(Some(Secret(value.into_encoded_bytes()))),
        }
    }

    /// A secret from raw bytes (the tests' known answers).
    #[cfg(test)]
    pub(crate) fn new(bytes: &[u8]) -> Secret {
        Secret(bytes.to_vec())
    }

    /// The header value for `body` sent at `t` (Unix seconds).
    #[allow(clippy::expect_used)] // invariant: HMAC accepts a key of any length
    pub fn signature(&self, t: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }
}

/// Why webhooks cannot be sent: no secret to sign with.
pub fn missing_secret() -> Error {
    Error::AlertConfig(format!(
        "{SECRET_ENV} is not set, so webhook alerts are refused (receivers could not tell them \
         from forgeries). Set it to a long random string, e.g. `export {SECRET_ENV}=$(openssl \
         rand -hex 32)`, in the environment of `meterline alerts` / `meterline serve` (systemd: \
         `EnvironmentFile=`), and give the same secret to your receiver to check \
         Meterline-Signature"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_t_dot_body() {
        // Computed independently: python3 hmac.new(b"Jefe", b"1700000000.{}", sha256).
        assert_eq!(
            Secret::new(b"Jefe").signature(1_700_000_000, "{}"),
            "t=1700000000,v1=d3793e2b4103edfbd98cc19591832f5fad701d413db9fcae0ae7dab8184ed207"
        );
        assert!(!format!("{:?}", Secret::new(b"Jefe")).contains("Jefe"));
    }
}
