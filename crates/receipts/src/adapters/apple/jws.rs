//! `StoreKit` 2 signed transactions: a JWS (`header.payload.signature`,
//! ES256) whose `x5c` header carries Apple's certificate chain, verified
//! offline the way Apple's app-store-server-library `SignedDataVerifier`
//! does with online (OCSP) checks off:
//!
//! 1. the header says `alg: ES256` and carries exactly three certificates
//!    (leaf, intermediate, root; standard base64 DER);
//! 2. the JWS signature (raw `r‖s`) verifies with the leaf's P-256 key;
//! 3. the root is byte for byte one of the configured Apple roots, the
//!    intermediate is a CA signed by the root, the leaf is signed by the
//!    intermediate, both carry Apple's marker extensions, and all three are
//!    valid at the payload's `signedDate` (Apple's effective date when it
//!    does not check revocation online);
//! 4. the payload's `bundleId` and `environment` are the configured ones.
//!
//! The outcome is a [`Validation`]: every refusal, malformed input included,
//! is `Invalid` with a reason that names what failed and no transaction (a
//! refused payload's id is not reported); nothing here panics on outside
//! input. Certificates are parsed with `x509-parser`; every signature
//! is checked with ring.
//!
//! Not here: revocation (OCSP) checks, the legacy `verifyReceipt` receipts
//! ([`super::verify_receipt`]), routing between the two
//! ([`super::router::AnyValidator`]), and what a transaction is worth
//! (refunds carry `revocationDate`; the ledger and the consumers decide).
//!
//! Apple's reference: <https://github.com/apple/app-store-server-library-node>
//! (`jws_verification.ts`), and the payload's fields:
//! <https://developer.apple.com/documentation/appstoreserverapi/jwstransactiondecodedpayload>.

use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_SIG_ECDSA_WITH_SHA256,
    OID_SIG_ECDSA_WITH_SHA384,
};
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::domain::{Transaction, Validation};

/// The reason every JWS gets while no Apple root is configured.
pub const NO_ROOT_CONFIGURED: &str = "no Apple root certificate configured (--apple-root-cert)";
/// The reason every JWS gets while no bundle id is configured.
pub const NO_BUNDLE_ID_CONFIGURED: &str = "no bundle id configured (--apple-bundle-id)";
/// The reason a chain whose root is not a configured one gets.
pub const NOT_AN_APPLE_ROOT: &str = "certificate chain does not end at a configured Apple root";
/// The reason a JWS whose signature fails gets.
pub const BAD_SIGNATURE: &str = "signature does not verify";

/// Why a signed transaction was refused: each case says what failed, and
/// its text is the `reason` of the [`Validation::Invalid`] it becomes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwsRefusal {
    /// No Apple root is configured.
    #[error("{NO_ROOT_CONFIGURED}")]
    NoRootConfigured,
    /// No bundle id is configured.
    #[error("{NO_BUNDLE_ID_CONFIGURED}")]
    NoBundleIdConfigured,
    /// Not three dot-separated parts.
    #[error("not a JWS: expected header.payload.signature")]
    NotCompact,
    /// The header or the payload is not base64url.
    #[error("JWS {part} is not base64url: {source}")]
    PartBase64 {
        /// `header` or `payload`.
        part: &'static str,
        /// The decoder's error.
        source: base64::DecodeError,
    },
    /// The header or the payload is not the JSON expected.
    #[error("JWS {part} is not valid: {source}")]
    PartJson {
        /// `header` or `payload`.
        part: &'static str,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// The header's `alg` is not ES256.
    #[error("JWS alg '{0}' is not ES256")]
    Algorithm(String),
    /// The header has `crit` parameters.
    #[error("JWS header has critical parameters ('crit'), none of which are supported")]
    CriticalParameters,
    /// `x5c` does not hold three certificates.
    #[error("x5c holds {0} certificates; expected 3 (leaf, intermediate, root)")]
    ChainLength(usize),
    /// A certificate of `x5c` is not base64.
    #[error("x5c {name} certificate is not base64: {source}")]
    CertificateBase64 {
        /// Its place in the chain (leaf, intermediate, root).
        name: &'static str,
        /// The decoder's error.
        source: base64::DecodeError,
    },
    /// A certificate is followed by more bytes.
    #[error("x5c {name} certificate has trailing bytes after its DER")]
    CertificateTrailingBytes {
        /// Its place in the chain.
        name: &'static str,
    },
    /// A certificate is not X.509.
    #[error("x5c {name} certificate is not X.509: {source}")]
    CertificateNotX509 {
        /// Its place in the chain.
        name: &'static str,
        /// The parser's error.
        source: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
    /// The JWS signature is not base64url.
    #[error("JWS signature is not base64url: {0}")]
    SignatureBase64(#[source] base64::DecodeError),
    /// The leaf's key cannot check an ES256 signature.
    #[error("the leaf certificate's key is not an EC P-256 key, as ES256 needs")]
    LeafKeyNotP256,
    /// The JWS signature does not verify with the leaf's key.
    #[error("{BAD_SIGNATURE}")]
    BadSignature,
    /// A payload field a transaction always has is missing.
    #[error("payload has no {0} (is it a transaction?)")]
    Missing(&'static str),
    /// The payload names no environment.
    #[error("payload has no environment")]
    NoEnvironment,
    /// The transaction is another app's.
    #[error("bundleId '{found}' is not the expected '{expected}'")]
    BundleId {
        /// The payload's.
        found: String,
        /// The configured one.
        expected: String,
    },
    /// The transaction's environment is not accepted.
    #[error("environment '{found}' is not accepted (--apple-environment {accepted})")]
    Environment {
        /// The payload's.
        found: String,
        /// The configured rule.
        accepted: EnvironmentRule,
    },
    /// The root is not a configured one.
    #[error("{NOT_AN_APPLE_ROOT}")]
    NotAnAppleRoot,
    /// The intermediate may not issue certificates.
    #[error("the intermediate certificate is not a CA (basicConstraints)")]
    IntermediateNotCa,
    /// Apple's marker extension is missing.
    #[error("missing Apple marker extension on the {name} ({oid})")]
    MissingMarker {
        /// The certificate (leaf, intermediate).
        name: &'static str,
        /// The marker's OID.
        oid: &'static str,
    },
    /// A certificate was not valid when the transaction was signed.
    #[error(
        "certificate not valid at signedDate: the {name} is valid from {not_before} to {not_after}, signedDate is {signed}"
    )]
    NotValidAtSignedDate {
        /// The certificate.
        name: &'static str,
        /// Its validity's start.
        not_before: String,
        /// Its validity's end.
        not_after: String,
        /// The payload's `signedDate`.
        signed: String,
    },
    /// A certificate's issuer is not the next one's subject.
    #[error("the {name} certificate's issuer is not the {issuer_name}'s subject")]
    IssuerMismatch {
        /// The certificate.
        name: &'static str,
        /// The one that should have issued it.
        issuer_name: &'static str,
    },
    /// A certificate's signed and unsigned algorithms differ.
    #[error("the {name} certificate's signature algorithms disagree")]
    AlgorithmsDisagree {
        /// The certificate.
        name: &'static str,
    },
    /// A certificate is signed with an algorithm Apple does not use.
    #[error(
        "the {name} certificate's signature algorithm {oid} is not ECDSA with SHA-256 or SHA-384"
    )]
    CertificateAlgorithm {
        /// The certificate.
        name: &'static str,
        /// The algorithm's OID.
        oid: String,
    },
    /// An issuer's key is not one Apple's chain uses.
    #[error("the {issuer_name} certificate's key is not an EC P-256 or P-384 key")]
    IssuerKey {
        /// The issuer.
        issuer_name: &'static str,
    },
    /// A certificate's signature does not verify with its issuer's key.
    #[error("the {name} certificate is not signed by the {issuer_name}")]
    NotSignedBy {
        /// The certificate.
        name: &'static str,
        /// Its issuer.
        issuer_name: &'static str,
    },
}

/// A root certificate file that cannot be used (`--apple-root-cert`).
#[derive(Debug, thiserror::Error)]
pub enum RootCertError {
    /// The file cannot be read.
    #[error("--apple-root-cert {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds no usable certificate.
    #[error("--apple-root-cert {}: {problem}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        problem: RootCertProblem,
    },
}

/// What is wrong with a root certificate file's content.
#[derive(Debug, thiserror::Error)]
pub enum RootCertProblem {
    /// Not PEM, and not one DER certificate either.
    #[error("neither PEM nor a DER certificate ({0})")]
    NotPemNorDer(#[source] JwsRefusal),
    /// PEM that does not parse.
    #[error("not valid PEM: {0}")]
    Pem(#[source] x509_parser::error::PEMError),
    /// A PEM block that is not a certificate.
    #[error(transparent)]
    Certificate(JwsRefusal),
    /// PEM without a `CERTIFICATE` block.
    #[error("no CERTIFICATE block in this PEM file")]
    NoCertificate,
}

/// Apple's marker on the certificate that signs App Store data (the leaf).
const LEAF_MARKER_OID: &str = "1.2.840.113635.100.6.11.1";
/// Apple's marker on the Worldwide Developer Relations intermediate.
const INTERMEDIATE_MARKER_OID: &str = "1.2.840.113635.100.6.2.1";

/// Which App Store environments a signed transaction may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EnvironmentRule {
    /// `Production` only (the default).
    #[default]
    Production,
    /// `Sandbox` only (`TestFlight`, sandbox testers).
    Sandbox,
    /// Any environment, `Xcode` and `LocalTesting` included (development only).
    Any,
}

impl EnvironmentRule {
    /// Whether a payload's `environment` (as Apple spells it) is accepted.
    pub fn accepts(self, environment: &str) -> bool {
        match self {
            Self::Production => environment == "Production",
            Self::Sandbox => environment == "Sandbox",
            Self::Any => true,
        }
    }

    /// How the option spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Sandbox => "sandbox",
            Self::Any => "any",
        }
    }
}

impl fmt::Display for EnvironmentRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Verifies `StoreKit` 2 signed transactions offline (see the module doc).
#[derive(Clone)]
pub struct JwsVerifier {
    /// DER of each trusted root, compared byte for byte with `x5c[2]`.
    roots: Vec<Vec<u8>>,
    bundle_id: Option<String>,
    environment: EnvironmentRule,
}

impl fmt::Debug for JwsVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwsVerifier")
            .field("roots", &self.roots.len())
            .field("bundle_id", &self.bundle_id)
            .field("environment", &self.environment)
            .finish()
    }
}

impl JwsVerifier {
    /// A verifier trusting `roots` (DER). Without a root or a bundle id every
    /// JWS is refused, and a warning says so now.
    pub fn new(
        roots: Vec<Vec<u8>>,
        bundle_id: Option<String>,
        environment: EnvironmentRule,
    ) -> Self {
        let bundle_id = bundle_id.filter(|id| !id.trim().is_empty());
        if roots.is_empty() {
            tracing::warn!(
                "receipts: {NO_ROOT_CONFIGURED}; every StoreKit 2 signed transaction will be INVALID"
            );
        }
        if bundle_id.is_none() {
            tracing::warn!(
                "receipts: {NO_BUNDLE_ID_CONFIGURED}; every StoreKit 2 signed transaction will be INVALID"
            );
        }
        Self {
            roots,
            bundle_id,
            environment,
        }
    }

    /// A verifier trusting every certificate in `paths` (PEM, several per
    /// file allowed, or one DER certificate per file).
    pub fn from_pem_files(
        paths: &[PathBuf],
        bundle_id: Option<String>,
        environment: EnvironmentRule,
    ) -> Result<Self, RootCertError> {
        let mut roots = Vec::new();
        for path in paths {
            let bytes = std::fs::read(path).map_err(|source| RootCertError::Read {
                path: path.clone(),
                source,
            })?;
            let found = certificates_in(&bytes).map_err(|problem| RootCertError::Refused {
                path: path.clone(),
                problem,
            })?;
            roots.extend(found);
        }
        Ok(Self::new(roots, bundle_id, environment))
    }

    /// Verifies one signed transaction; see the module doc for the checks.
    pub fn verify(&self, jws: &str) -> Validation {
        match self.check(jws.trim_ascii()) {
            Ok(verified) => Validation::Valid {
                environment: verified.environment,
                transactions: vec![Transaction {
                    transaction_id: verified.transaction_id,
                    product_id: verified.product_id,
                }],
            },
            Err(refusal) => Validation::invalid(refusal.to_string()),
        }
    }

    fn check(&self, jws: &str) -> Result<Verified, JwsRefusal> {
        if self.roots.is_empty() {
            return Err(JwsRefusal::NoRootConfigured);
        }
        let Some(bundle_id) = self.bundle_id.as_deref() else {
            return Err(JwsRefusal::NoBundleIdConfigured);
        };
        let mut parts = jws.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsRefusal::NotCompact);
        };

        let header: Header = decode_json("header", header_b64)?;
        if header.alg != "ES256" {
            return Err(JwsRefusal::Algorithm(header.alg));
        }
        if header.crit.is_some() {
            return Err(JwsRefusal::CriticalParameters);
        }
        if header.x5c.len() != 3 {
            return Err(JwsRefusal::ChainLength(header.x5c.len()));
        }
        let ders = header
            .x5c
            .iter()
            .zip(CHAIN_NAMES)
            .map(|(text, name)| {
                STANDARD
                    .decode(text)
                    .map_err(|source| JwsRefusal::CertificateBase64 { name, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let [leaf_der, intermediate_der, root_der] = ders.as_slice() else {
            return Err(JwsRefusal::ChainLength(ders.len()));
        };
        let leaf = parse_certificate("leaf", leaf_der)?;
        let intermediate = parse_certificate("intermediate", intermediate_der)?;
        let root = parse_certificate("root", root_der)?;

        // The signature first (with the leaf's key; the chain is checked
        // below), so that a tampered payload is reported as such and the
        // payload is only read once it is known to be what was signed.
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(JwsRefusal::SignatureBase64)?;
        let signing_input = &jws[..header_b64.len() + 1 + payload_b64.len()];
        if ec_curve(leaf.public_key()) != Some(Curve::P256) {
            return Err(JwsRefusal::LeafKeyNotP256);
        }
        UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            &leaf.public_key().subject_public_key.data,
        )
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| JwsRefusal::BadSignature)?;

        let payload: SignedTransaction = decode_json("payload", payload_b64)?;
        let signed_date = payload
            .signed_date
            .ok_or(JwsRefusal::Missing("signedDate"))?;
        self.check_chain(&leaf, &intermediate, &root, root_der, signed_date)?;

        let payload_bundle = payload.bundle_id.ok_or(JwsRefusal::Missing("bundleId"))?;
        if payload_bundle != bundle_id {
            return Err(JwsRefusal::BundleId {
                found: payload_bundle,
                expected: bundle_id.to_owned(),
            });
        }
        let environment = payload.environment.ok_or(JwsRefusal::NoEnvironment)?;
        if !self.environment.accepts(&environment) {
            return Err(JwsRefusal::Environment {
                found: environment,
                accepted: self.environment,
            });
        }
        let transaction_id = payload
            .transaction_id
            .filter(|id| !id.is_empty())
            .ok_or(JwsRefusal::Missing("transactionId"))?;
        Ok(Verified {
            environment,
            transaction_id,
            product_id: payload.product_id,
        })
    }

    /// The chain rules of Apple's `verifyCertificateChain`, at `at_ms`.
    fn check_chain(
        &self,
        leaf: &X509Certificate<'_>,
        intermediate: &X509Certificate<'_>,
        root: &X509Certificate<'_>,
        root_der: &[u8],
        at_ms: i64,
    ) -> Result<(), JwsRefusal> {
        if !self
            .roots
            .iter()
            .any(|trusted| trusted.as_slice() == root_der)
        {
            return Err(JwsRefusal::NotAnAppleRoot);
        }
        issued_by("intermediate", intermediate, "root", root)?;
        issued_by("leaf", leaf, "intermediate", intermediate)?;
        match intermediate.basic_constraints() {
            Ok(Some(constraints)) if constraints.value.ca => {}
            _ => return Err(JwsRefusal::IntermediateNotCa),
        }
        if !has_extension(leaf, LEAF_MARKER_OID) {
            return Err(JwsRefusal::MissingMarker {
                name: "leaf",
                oid: LEAF_MARKER_OID,
            });
        }
        if !has_extension(intermediate, INTERMEDIATE_MARKER_OID) {
            return Err(JwsRefusal::MissingMarker {
                name: "intermediate",
                oid: INTERMEDIATE_MARKER_OID,
            });
        }
        for (name, certificate) in CHAIN_NAMES.into_iter().zip([leaf, intermediate, root]) {
            let validity = certificate.validity();
            let (from, to) = (
                validity.not_before.timestamp().saturating_mul(1000),
                validity.not_after.timestamp().saturating_mul(1000),
            );
            if !(from..=to).contains(&at_ms) {
                let signed = ASN1Time::from_timestamp(at_ms.div_euclid(1000))
                    .map_or_else(|_| format!("{at_ms} ms"), |t| t.to_string());
                return Err(JwsRefusal::NotValidAtSignedDate {
                    name,
                    not_before: validity.not_before.to_string(),
                    not_after: validity.not_after.to_string(),
                    signed,
                });
            }
        }
        Ok(())
    }
}

/// The positions of `x5c`, in order.
const CHAIN_NAMES: [&str; 3] = ["leaf", "intermediate", "root"];

/// What a verified signed transaction says.
struct Verified {
    environment: String,
    transaction_id: String,
    product_id: Option<String>,
}

/// The JWS header fields read here (others, such as `kid`, are ignored).
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    x5c: Vec<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// The fields of Apple's `JWSTransactionDecodedPayload` used here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignedTransaction {
    transaction_id: Option<String>,
    product_id: Option<String>,
    bundle_id: Option<String>,
    environment: Option<String>,
    /// Milliseconds since the Unix epoch.
    signed_date: Option<i64>,
}

pub use crate::domain::is_jws;

fn decode_json<T: DeserializeOwned>(part: &'static str, text: &str) -> Result<T, JwsRefusal> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|source| JwsRefusal::PartBase64 { part, source })?;
    serde_json::from_slice(&bytes).map_err(|source| JwsRefusal::PartJson { part, source })
}

fn parse_certificate<'a>(
    name: &'static str,
    der: &'a [u8],
) -> Result<X509Certificate<'a>, JwsRefusal> {
    match X509Certificate::from_der(der) {
        Ok(([], certificate)) => Ok(certificate),
        Ok(_) => Err(JwsRefusal::CertificateTrailingBytes { name }),
        Err(source) => Err(JwsRefusal::CertificateNotX509 { name, source }),
    }
}

/// The EC curves Apple's chain uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

fn ec_curve(key: &SubjectPublicKeyInfo<'_>) -> Option<Curve> {
    if key.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return None;
    }
    let curve = key.algorithm.parameters.as_ref()?.as_oid().ok()?;
    if curve == OID_EC_P256 {
        Some(Curve::P256)
    } else if curve == OID_NIST_EC_P384 {
        Some(Curve::P384)
    } else {
        None
    }
}

/// Checks that `issuer` issued `certificate`: names chain, and the
/// certificate's signature verifies with the issuer's key (ECDSA on P-256 or
/// P-384 with SHA-256 or SHA-384, what Apple's chain uses).
fn issued_by(
    name: &'static str,
    certificate: &X509Certificate<'_>,
    issuer_name: &'static str,
    issuer: &X509Certificate<'_>,
) -> Result<(), JwsRefusal> {
    if certificate.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(JwsRefusal::IssuerMismatch { name, issuer_name });
    }
    // RFC 5280 4.1.1.2: the signed and the unsigned algorithm must agree.
    if certificate.signature_algorithm != certificate.tbs_certificate.signature {
        return Err(JwsRefusal::AlgorithmsDisagree { name });
    }
    let sha384 = match &certificate.signature_algorithm.algorithm {
        oid if *oid == OID_SIG_ECDSA_WITH_SHA256 => false,
        oid if *oid == OID_SIG_ECDSA_WITH_SHA384 => true,
        oid => {
            return Err(JwsRefusal::CertificateAlgorithm {
                name,
                oid: oid.to_id_string(),
            });
        }
    };
    let algorithm: &'static dyn VerificationAlgorithm =
        match (ec_curve(issuer.public_key()), sha384) {
            (Some(Curve::P256), false) => &signature::ECDSA_P256_SHA256_ASN1,
            (Some(Curve::P256), true) => &signature::ECDSA_P256_SHA384_ASN1,
            (Some(Curve::P384), false) => &signature::ECDSA_P384_SHA256_ASN1,
            (Some(Curve::P384), true) => &signature::ECDSA_P384_SHA384_ASN1,
            (None, _) => {
                return Err(JwsRefusal::IssuerKey { issuer_name });
            }
        };
    UnparsedPublicKey::new(algorithm, &issuer.public_key().subject_public_key.data)
        .verify(
            certificate.tbs_certificate.as_ref(),
            &certificate.signature_value.data,
        )
        .map_err(|_| JwsRefusal::NotSignedBy { name, issuer_name })
}

fn has_extension(certificate: &X509Certificate<'_>, oid: &str) -> bool {
    certificate
        .extensions()
        .iter()
        .any(|extension| extension.oid.to_id_string() == oid)
}

/// The certificates in a root certificate file: every `CERTIFICATE` block
/// of a PEM file, or the file itself as one DER certificate.
fn certificates_in(bytes: &[u8]) -> Result<Vec<Vec<u8>>, RootCertProblem> {
    let is_pem = bytes.windows(11).any(|window| window == b"-----BEGIN ");
    if !is_pem {
        parse_certificate("root", bytes).map_err(RootCertProblem::NotPemNorDer)?;
        return Ok(vec![bytes.to_vec()]);
    }
    let mut found = Vec::new();
    for block in Pem::iter_from_buffer(bytes) {
        let block = block.map_err(RootCertProblem::Pem)?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        parse_certificate("root", &block.contents).map_err(RootCertProblem::Certificate)?;
        found.push(block.contents);
    }
    if found.is_empty() {
        return Err(RootCertProblem::NoCertificate);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_rules_follow_apples_spelling() {
        assert!(EnvironmentRule::Production.accepts("Production"));
        assert!(!EnvironmentRule::Production.accepts("Sandbox"));
        assert!(!EnvironmentRule::Production.accepts("production"));
        assert!(EnvironmentRule::Sandbox.accepts("Sandbox"));
        assert!(!EnvironmentRule::Sandbox.accepts("Xcode"));
        for environment in ["Production", "Sandbox", "Xcode", "LocalTesting"] {
            assert!(EnvironmentRule::Any.accepts(environment));
        }
    }

    #[test]
    fn jws_shape_matches_the_jobs_rule() {
        assert!(is_jws("a.b.c"));
        assert!(is_jws(" a.b.c\n"));
        assert!(!is_jws("a.b"));
        assert!(!is_jws("a..c"));
        assert!(!is_jws("a.b.c.d"));
        assert!(!is_jws("ewoJInNpZ25hdHVyZSIgPSAiQW=="));
    }

    #[test]
    fn root_files_that_are_not_certificates_are_refused() {
        assert!(certificates_in(b"not a certificate").is_err());
        assert!(
            certificates_in(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
        assert!(
            certificates_in(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
    }
}
