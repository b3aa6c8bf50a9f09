//! TLS for the seed's raw-TCP port (rustls, ring provider): the port's own
//! certificate, and with `--kv-tcp-client-ca` mutual TLS — a client must
//! present a certificate that CA signed, or the handshake fails. This is the
//! port's only credential: the seed protocol has no field for one.

use std::path::Path;
use std::sync::Arc;

use platform::config::ConfigError;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The raw-TCP port's TLS acceptor and whether it requires client certificates.
#[derive(Clone)]
pub struct TcpTls {
    /// Accepts TLS connections with the configured certificate (and client CA).
    pub acceptor: TlsAcceptor,
    /// Client certificates are verified against `--kv-tcp-client-ca`.
    pub mutual: bool,
}

fn certificates(
    path: &Path,
    option: &'static str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(std::iter::Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| ConfigError::new(option, format!("cannot read {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            option,
            format!("no PEM certificate found in {}", path.display()),
        ));
    }
    Ok(certs)
}

impl TcpTls {
    /// Reads the certificate chain, key and (for mutual TLS) the client CA.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, ConfigError> {
        let chain = certificates(cert, "--kv-tcp-tls-cert")?;
        let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            ConfigError::new(
                "--kv-tcp-tls-key",
                format!("cannot read a PEM private key from {}: {e}", key.display()),
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new("--kv-tcp-tls-cert", e.to_string()))?;
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(ca, "--kv-tcp-client-ca")? {
                    roots.add(cert).map_err(|e| {
                        ConfigError::new(
                            "--kv-tcp-client-ca",
                            format!("{} is not a usable CA certificate: {e}", ca.display()),
                        )
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| ConfigError::new("--kv-tcp-client-ca", e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(chain, private).map_err(|e| {
            ConfigError::new(
                "--kv-tcp-tls-key",
                format!("the key does not fit --kv-tcp-tls-cert: {e}"),
            )
        })?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            mutual: client_ca.is_some(),
        })
    }
}
