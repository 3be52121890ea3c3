//! TLS to the server, after libpq's `sslmode`: `require`, `verify-ca` and `verify-full`
//! verify the server's certificate against the system's roots (`/etc/ssl/certs` on Debian);
//! `allow` and `prefer` (the default) encrypt when the server offers TLS without verifying it,
//! as libpq does, so a server with its distribution's self-signed certificate is reachable
//! without settings, and never less protected than without TLS.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{Error, Result};

type Made = std::result::Result<Arc<ClientConfig>, String>;

/// TLS whose certificate must chain to one of the system's roots and name the host.
pub(crate) fn verified() -> Result<MakeRustlsConnect> {
    static CONFIG: OnceLock<Made> = OnceLock::new();
    connector(CONFIG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A certificate the system lists but rustls cannot parse is skipped, as curl does.
            let _ = roots.add(cert);
        }
        Ok(Arc::new(
            builder()?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ))
    }))
}

/// TLS that encrypts whatever certificate the server shows (its handshake signatures are
/// still checked): `prefer`'s.
pub(crate) fn encrypted_only() -> Result<MakeRustlsConnect> {
    static CONFIG: OnceLock<Made> = OnceLock::new();
    connector(CONFIG.get_or_init(|| {
        Ok(Arc::new(
            builder()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider())))
                .with_no_client_auth(),
        ))
    }))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn builder()
-> std::result::Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, String> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
}

fn connector(made: &Made) -> Result<MakeRustlsConnect> {
    match made {
        Ok(config) => Ok(MakeRustlsConnect::new((**config).clone())),
        Err(e) => Err(Error::CannotOpen(format!("cannot set up TLS: {e}"))),
    }
}

/// Accepts the server's certificate as it is; checks that the handshake is signed by it.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
