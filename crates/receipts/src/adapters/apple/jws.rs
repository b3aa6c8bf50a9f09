//! StoreKit 2 signed transactions: a JWS (`header.payload.signature`,
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
    /// `Sandbox` only (TestFlight, sandbox testers).
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

/// Verifies StoreKit 2 signed transactions offline (see the module doc).
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
    ) -> Result<Self, String> {
        let mut roots = Vec::new();
        for path in paths {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("--apple-root-cert {}: {e}", path.display()))?;
            let found = certificates_in(&bytes)
                .map_err(|e| format!("--apple-root-cert {}: {e}", path.display()))?;
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
            Err(reason) => Validation::invalid(reason),
        }
    }

    fn check(&self, jws: &str) -> Result<Verified, String> {
        if self.roots.is_empty() {
            return Err(NO_ROOT_CONFIGURED.into());
        }
        let Some(bundle_id) = self.bundle_id.as_deref() else {
            return Err(NO_BUNDLE_ID_CONFIGURED.into());
        };
        let mut parts = jws.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a JWS: expected header.payload.signature".into());
        };

        let header: Header = decode_json("header", header_b64)?;
        if header.alg != "ES256" {
            return Err(format!("JWS alg '{}' is not ES256", header.alg));
        }
        if header.crit.is_some() {
            return Err(
                "JWS header has critical parameters ('crit'), none of which are supported".into(),
            );
        }
        if header.x5c.len() != 3 {
            return Err(format!(
                "x5c holds {} certificates; expected 3 (leaf, intermediate, root)",
                header.x5c.len()
            ));
        }
        let ders = header
            .x5c
            .iter()
            .zip(CHAIN_NAMES)
            .map(|(text, name)| {
                STANDARD
                    .decode(text)
                    .map_err(|e| format!("x5c {name} certificate is not base64: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let [leaf_der, intermediate_der, root_der] = ders.as_slice() else {
            return Err("x5c does not hold 3 certificates".into());
        };
        let leaf = parse_certificate("leaf", leaf_der)?;
        let intermediate = parse_certificate("intermediate", intermediate_der)?;
        let root = parse_certificate("root", root_der)?;

        // The signature first (with the leaf's key; the chain is checked
        // below), so that a tampered payload is reported as such and the
        // payload is only read once it is known to be what was signed.
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|e| format!("JWS signature is not base64url: {e}"))?;
        let signing_input = &jws[..header_b64.len() + 1 + payload_b64.len()];
        if ec_curve(leaf.public_key()) != Some(Curve::P256) {
            return Err("the leaf certificate's key is not an EC P-256 key, as ES256 needs".into());
        }
        UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            &leaf.public_key().subject_public_key.data,
        )
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| BAD_SIGNATURE.to_owned())?;

        let payload: SignedTransaction = decode_json("payload", payload_b64)?;
        let signed_date = payload
            .signed_date
            .ok_or("payload has no signedDate (is it a transaction?)")?;
        self.check_chain(&leaf, &intermediate, &root, root_der, signed_date)?;

        let payload_bundle = payload
            .bundle_id
            .ok_or("payload has no bundleId (is it a transaction?)")?;
        if payload_bundle != bundle_id {
            return Err(format!(
                "bundleId '{payload_bundle}' is not the expected '{bundle_id}'"
            ));
        }
        let environment = payload.environment.ok_or("payload has no environment")?;
        if !self.environment.accepts(&environment) {
            return Err(format!(
                "environment '{environment}' is not accepted (--apple-environment {})",
                self.environment
            ));
        }
        let transaction_id = payload
            .transaction_id
            .filter(|id| !id.is_empty())
            .ok_or("payload has no transactionId (is it a transaction?)")?;
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
    ) -> Result<(), String> {
        if !self
            .roots
            .iter()
            .any(|trusted| trusted.as_slice() == root_der)
        {
            return Err(NOT_AN_APPLE_ROOT.into());
        }
        issued_by("intermediate", intermediate, "root", root)?;
        issued_by("leaf", leaf, "intermediate", intermediate)?;
        match intermediate.basic_constraints() {
            Ok(Some(constraints)) if constraints.value.ca => {}
            _ => return Err("the intermediate certificate is not a CA (basicConstraints)".into()),
        }
        if !has_extension(leaf, LEAF_MARKER_OID) {
            return Err(format!(
                "missing Apple marker extension on the leaf ({LEAF_MARKER_OID})"
            ));
        }
        if !has_extension(intermediate, INTERMEDIATE_MARKER_OID) {
            return Err(format!(
                "missing Apple marker extension on the intermediate ({INTERMEDIATE_MARKER_OID})"
            ));
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
                return Err(format!(
                    "certificate not valid at signedDate: the {name} is valid from {} to {}, signedDate is {signed}",
                    validity.not_before, validity.not_after
                ));
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

fn decode_json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| format!("JWS {what} is not base64url: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("JWS {what} is not valid: {e}"))
}

fn parse_certificate<'a>(name: &str, der: &'a [u8]) -> Result<X509Certificate<'a>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], certificate)) => Ok(certificate),
        Ok(_) => Err(format!(
            "x5c {name} certificate has trailing bytes after its DER"
        )),
        Err(e) => Err(format!("x5c {name} certificate is not X.509: {e}")),
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
    name: &str,
    certificate: &X509Certificate<'_>,
    issuer_name: &str,
    issuer: &X509Certificate<'_>,
) -> Result<(), String> {
    if certificate.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(format!(
            "the {name} certificate's issuer is not the {issuer_name}'s subject"
        ));
    }
    // RFC 5280 4.1.1.2: the signed and the unsigned algorithm must agree.
    if certificate.signature_algorithm != certificate.tbs_certificate.signature {
        return Err(format!(
            "the {name} certificate's signature algorithms disagree"
        ));
    }
    let sha384 = match &certificate.signature_algorithm.algorithm {
        oid if *oid == OID_SIG_ECDSA_WITH_SHA256 => false,
        oid if *oid == OID_SIG_ECDSA_WITH_SHA384 => true,
        oid => {
            return Err(format!(
                "the {name} certificate's signature algorithm {oid} is not ECDSA with SHA-256 or SHA-384"
            ));
        }
    };
    let algorithm: &'static dyn VerificationAlgorithm =
        match (ec_curve(issuer.public_key()), sha384) {
            (Some(Curve::P256), false) => &signature::ECDSA_P256_SHA256_ASN1,
            (Some(Curve::P256), true) => &signature::ECDSA_P256_SHA384_ASN1,
            (Some(Curve::P384), false) => &signature::ECDSA_P384_SHA256_ASN1,
            (Some(Curve::P384), true) => &signature::ECDSA_P384_SHA384_ASN1,
            (None, _) => {
                return Err(format!(
                    "the {issuer_name} certificate's key is not an EC P-256 or P-384 key"
                ));
            }
        };
    UnparsedPublicKey::new(algorithm, &issuer.public_key().subject_public_key.data)
        .verify(
            certificate.tbs_certificate.as_ref(),
            &certificate.signature_value.data,
        )
        .map_err(|_| format!("the {name} certificate is not signed by the {issuer_name}"))
}

fn has_extension(certificate: &X509Certificate<'_>, oid: &str) -> bool {
    certificate
        .extensions()
        .iter()
        .any(|extension| extension.oid.to_id_string() == oid)
}

/// The certificates in a root certificate file: every `CERTIFICATE` block
/// of a PEM file, or the file itself as one DER certificate.
fn certificates_in(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let is_pem = bytes.windows(11).any(|window| window == b"-----BEGIN ");
    if !is_pem {
        parse_certificate("root", bytes)
            .map_err(|e| format!("neither PEM nor a DER certificate ({e})"))?;
        return Ok(vec![bytes.to_vec()]);
    }
    let mut found = Vec::new();
    for block in Pem::iter_from_buffer(bytes) {
        let block = block.map_err(|e| format!("not valid PEM: {e}"))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        parse_certificate("root", &block.contents)?;
        found.push(block.contents);
    }
    if found.is_empty() {
        return Err("no CERTIFICATE block in this PEM file".into());
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
