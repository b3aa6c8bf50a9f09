//! TLS for the one listener (rustls, ring provider): certificates from PEM
//! files, or a self-signed certificate created once in `<data-dir>/tls/` and
//! reused on every start (its key written 0600).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Where the TLS certificate comes from, once resolved.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// A certificate generated once into the data directory and reused.
    SelfSigned {
        /// The host names and IP addresses it is valid for.
        names: Vec<String>,
    },
    /// A certificate chain and key the operator provides.
    Files {
        /// The PEM certificate chain.
        cert: PathBuf,
        /// The PEM private key.
        key: PathBuf,
    },
}

/// Paths of the self-signed certificate and key inside a data directory.
pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Why certificate or key files cannot serve TLS; each names its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The certificate file cannot be read or is not PEM.
    #[error("cannot read TLS certificate {}", .path.display())]
    ReadCertificate {
        /// The certificate file.
        path: PathBuf,
        /// What reading or decoding it reported.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("no certificate found in {}", .path.display())]
    NoCertificate {
        /// The certificate file.
        path: PathBuf,
    },
    /// The key file cannot be read, is not PEM or holds no private key.
    #[error("cannot read TLS private key {}", .path.display())]
    ReadKey {
        /// The key file.
        path: PathBuf,
        /// What reading or decoding it reported.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// rustls refused the pair (e.g. the key is not the certificate's).
    #[error("TLS certificate and key do not form a usable pair")]
    Mismatch(#[source] rustls::Error),
}

impl TlsFileError {
    /// The option that names the file at fault.
    pub fn option(&self) -> &'static str {
        match self {
            TlsFileError::ReadCertificate { .. } | TlsFileError::NoCertificate { .. } => {
                "--tls-cert"
            }
            TlsFileError::ReadKey { .. } | TlsFileError::Mismatch(_) => "--tls-key",
        }
    }
}

/// The rustls configuration for a certificate chain and key in PEM files.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<ServerConfig, TlsFileError> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|source| TlsFileError::ReadCertificate {
            path: cert_path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsFileError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|source| TlsFileError::ReadKey {
        path: key_path.to_path_buf(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsFileError::Mismatch)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsFileError::Mismatch)?;
    // h2 first: gRPC needs HTTP/2; browsers and curl fall back to HTTP/1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Builds the acceptor, creating the self-signed certificate if it is asked for and missing.
pub fn acceptor(source: &TlsSource, data_dir: &Path) -> anyhow::Result<TlsAcceptor> {
    let (cert_path, key_path) = match source {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone()),
        TlsSource::SelfSigned { names } => {
            let (cert, key) = self_signed_paths(data_dir);
            if !(cert.exists() && key.exists()) {
                create_self_signed(names, &cert, &key)?;
                tracing::info!(cert = %cert.display(), "created a self-signed TLS certificate");
            } else if due_for_renewal(&cert) {
                create_self_signed(names, &cert, &key)?;
                tracing::warn!(cert = %cert.display(), "the self-signed TLS certificate was due to expire; created a new one (clients that pinned the old one must trust the new one)");
            }
            crate::private::file(&key, "--tls self-signed key")?;
            (cert, key)
        }
    };
    let config = server_config(&cert_path, &key_path)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn create_self_signed(names: &[String], cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    let names: Vec<String> = names
        .iter()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    let mut params = rcgen::CertificateParams::new(names)
        .context("the names for the self-signed certificate")?;
    let now = time::OffsetDateTime::now_utc();
    // A day back for clocks that lag; valid for a year, renewed on a start
    // in its last month (see `due_for_renewal`).
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + SELF_SIGNED_VALIDITY;
    let key_pair = rcgen::KeyPair::generate().context("generating a key pair")?;
    let cert = params
        .self_signed(&key_pair)
        .context("generating a self-signed certificate")?;
    let dir = cert_path
        .parent()
        .context("certificate path has a directory")?;
    crate::private::create_dir(dir)?;
    write_file(key_path, key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_file(cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// How long a self-signed certificate is valid.
const SELF_SIGNED_VALIDITY: time::Duration = time::Duration::days(365);
/// A self-signed certificate this old is renewed at start (a month early).
const RENEW_AFTER: std::time::Duration = std::time::Duration::from_hours(335 * 24);

/// Whether the self-signed certificate quintet wrote is in its last month
/// (its file's age tells: quintet writes it only when it creates it).
fn due_for_renewal(cert: &Path) -> bool {
    fs::metadata(cert)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|written| written.elapsed().ok())
        .is_some_and(|age| age >= RENEW_AFTER)
}

/// Writes through a temporary file and a rename, so a crash never leaves half a key.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn self_signed_certificate_is_created_once_with_a_private_key_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = TlsSource::SelfSigned {
            names: vec!["localhost".into(), "127.0.0.1".into()],
        };
        acceptor(&source, dir.path()).expect("first start creates the certificate");
        let (cert, key) = self_signed_paths(dir.path());
        let mode = fs::metadata(&key).expect("key exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let first = fs::read(&cert).expect("cert");
        acceptor(&source, dir.path()).expect("second start reuses it");
        assert_eq!(first, fs::read(&cert).expect("cert"));

        // Valid for a year, read by a tool quintet did not write (openssl).
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-checkend"])
            .arg((366 * 24 * 3600).to_string())
            .arg("-in")
            .arg(&cert)
            .output()
            .expect("openssl (Debian package openssl) runs");
        assert!(
            !out.status.success(),
            "the certificate must expire within 366 days: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-checkend"])
            .arg((364 * 24 * 3600).to_string())
            .arg("-in")
            .arg(&cert)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "the certificate is valid for 364 days"
        );

        // In its last month (its file says it was written 340 days ago), a
        // start writes a new one.
        let touched = std::process::Command::new("touch")
            .args(["-d", "340 days ago"])
            .arg(&cert)
            .status()
            .expect("touch");
        assert!(touched.success());
        acceptor(&source, dir.path()).expect("a start renews it");
        assert_ne!(first, fs::read(&cert).expect("cert"), "renewed");
        assert!(!due_for_renewal(&cert));
    }

    #[test]
    fn missing_certificate_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = TlsSource::Files {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("k.pem"),
        };
        let err = acceptor(&source, dir.path()).err().expect("fails");
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }
}
