//! `StoreKit` 2 signed transactions: a test chain shaped like Apple's (root CA,
//! intermediate CA with Apple's WWDR marker, leaf with the App Store marker)
//! made with rcgen, JWS signed with the leaf's key (ES256), and the verifier
//! and the router asked what they make of them.

// A test that unwraps is a test that fails on the unexpected value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use proptest::prelude::*;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CustomExtension, DistinguishedName, DnType,
    IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    SignatureAlgorithm,
};
use receipts::adapters::apple::AnyValidator;
use receipts::adapters::apple::jws::{
    BAD_SIGNATURE, EnvironmentRule, JwsVerifier, NO_BUNDLE_ID_CONFIGURED, NO_ROOT_CONFIGURED,
    NOT_AN_APPLE_ROOT,
};
use receipts::domain::{Transaction, Validation};
use receipts::ports::{ReceiptValidator, ValidatorError};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

const BUNDLE: &str = "com.example.quintet";
const TRANSACTION: &str = "2000000847061981";
const PRODUCT: &str = "com.example.quintet.coins";
const LEAF_MARKER: &[u64] = &[1, 2, 840, 113_635, 100, 6, 11, 1];
const INTERMEDIATE_MARKER: &[u64] = &[1, 2, 840, 113_635, 100, 6, 2, 1];
/// 2025-02-10T04:29:32.561Z, inside every default validity below.
const SIGNED_DATE: i64 = 1_739_161_772_561;

/// A certificate with its key.
struct Issued {
    cert: Certificate,
    key: KeyPair,
}

impl Issued {
    fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }
}

/// How to make one certificate of the chain.
struct Spec {
    name: &'static str,
    alg: &'static SignatureAlgorithm,
    ca: bool,
    marker: Option<&'static [u64]>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Spec {
    fn new(name: &'static str, alg: &'static SignatureAlgorithm) -> Self {
        Self {
            name,
            alg,
            ca: false,
            marker: None,
            not_before: datetime!(2024-01-01 0:00 UTC),
            not_after: datetime!(2034-01-01 0:00 UTC),
        }
    }

    fn root(name: &'static str) -> Self {
        Self {
            ca: true,
            ..Self::new(name, &PKCS_ECDSA_P256_SHA256)
        }
    }

    /// Like Apple's WWDR intermediate: a P-384 CA with its marker, so the
    /// leaf is signed with ECDSA P-384/SHA-384 and the intermediate with
    /// P-256/SHA-256 (both paths of the chain check).
    fn intermediate() -> Self {
        Self {
            ca: true,
            marker: Some(INTERMEDIATE_MARKER),
            ..Self::new("Test WWDR Intermediate", &PKCS_ECDSA_P384_SHA384)
        }
    }

    fn leaf() -> Self {
        Self {
            marker: Some(LEAF_MARKER),
            ..Self::new("Test App Store Receipt Signing", &PKCS_ECDSA_P256_SHA256)
        }
    }

    fn params(&self) -> CertificateParams {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, self.name);
        name.push(DnType::OrganizationName, "Quintet Test");
        params.distinguished_name = name;
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        if self.ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        } else {
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        }
        if let Some(oid) = self.marker {
            // Apple's markers hold a DER NULL.
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(oid, vec![0x05, 0x00]));
        }
        params
    }

    fn self_signed(self) -> Issued {
        let key = KeyPair::generate_for(self.alg).expect("key");
        let cert = self.params().self_signed(&key).expect("self-signed");
        Issued { cert, key }
    }

    fn signed_by(self, issuer: &Issued) -> Issued {
        let key = KeyPair::generate_for(self.alg).expect("key");
        let cert = self
            .params()
            .signed_by(&key, &issuer.cert, &issuer.key)
            .expect("signed");
        Issued { cert, key }
    }
}

/// A well-formed chain: leaf, intermediate, root.
struct Chain {
    root: Issued,
    intermediate: Issued,
    leaf: Issued,
}

impl Chain {
    fn new() -> Self {
        Self::with(Spec::intermediate(), Spec::leaf())
    }

    fn with(intermediate: Spec, leaf: Spec) -> Self {
        let root = Spec::root("Test Apple Root CA").self_signed();
        let intermediate = intermediate.signed_by(&root);
        let leaf = leaf.signed_by(&intermediate);
        Self {
            root,
            intermediate,
            leaf,
        }
    }

    fn x5c(&self) -> Vec<Vec<u8>> {
        vec![self.leaf.der(), self.intermediate.der(), self.root.der()]
    }

    /// A verifier trusting this chain's root.
    fn verifier(&self, environment: EnvironmentRule) -> JwsVerifier {
        JwsVerifier::new(vec![self.root.der()], Some(BUNDLE.into()), environment)
    }

    fn sign(&self, payload: &Value) -> String {
        sign(&header("ES256", &self.x5c()), payload, &self.leaf.key)
    }
}

fn header(alg: &str, x5c: &[Vec<u8>]) -> Value {
    let x5c: Vec<String> = x5c.iter().map(|der| STANDARD.encode(der)).collect();
    json!({ "alg": alg, "x5c": x5c })
}

fn transaction(bundle: &str, environment: &str, signed_date: i64) -> Value {
    json!({
        "transactionId": TRANSACTION,
        "originalTransactionId": TRANSACTION,
        "bundleId": bundle,
        "productId": PRODUCT,
        "purchaseDate": signed_date - 60_000,
        "quantity": 1,
        "type": "Consumable",
        "inAppOwnershipType": "PURCHASED",
        "signedDate": signed_date,
        "environment": environment,
        "transactionReason": "PURCHASE",
    })
}

fn production() -> Value {
    transaction(BUNDLE, "Production", SIGNED_DATE)
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

/// A compact JWS signed with ES256 (raw r‖s) by `key`.
fn sign(header: &Value, payload: &Value, key: &KeyPair) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let rng = SystemRandom::new();
    let signer =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &rng)
            .expect("P-256 PKCS#8");
    let signature = signer.sign(&rng, input.as_bytes()).expect("signs");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

#[track_caller]
fn assert_invalid(validation: Validation, expected: &str) {
    match validation {
        Validation::Invalid { reason, .. } => assert!(
            reason.contains(expected),
            "reason '{reason}' does not say '{expected}'"
        ),
        valid @ Validation::Valid { .. } => panic!("expected INVALID ({expected}), got {valid:?}"),
    }
}

#[test]
fn a_signed_transaction_from_apples_chain_is_valid_with_its_transaction() {
    let chain = Chain::new();
    let jws = chain.sign(&production());
    assert_eq!(
        chain.verifier(EnvironmentRule::Production).verify(&jws),
        Validation::Valid {
            environment: "Production".into(),
            transactions: vec![Transaction {
                transaction_id: TRANSACTION.into(),
                product_id: Some(PRODUCT.into()),
            }],
        }
    );
    // Surrounding whitespace (a job's receipt) does not matter.
    let padded = format!(" {jws}\n");
    assert!(matches!(
        chain.verifier(EnvironmentRule::Production).verify(&padded),
        Validation::Valid { .. }
    ));
}

#[test]
fn a_tampered_payload_or_signature_does_not_verify() {
    let chain = Chain::new();
    let verifier = chain.verifier(EnvironmentRule::Production);
    let jws = chain.sign(&production());
    let parts: Vec<&str> = jws.split('.').collect();

    let mut other = production();
    other["transactionId"] = json!("2000000000000001");
    let swapped = format!("{}.{}.{}", parts[0], b64(&other), parts[2]);
    assert_invalid(verifier.verify(&swapped), BAD_SIGNATURE);

    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("base64url");
    signature[10] ^= 0x01;
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(&signature)
    );
    assert_invalid(verifier.verify(&flipped), BAD_SIGNATURE);

    // Signed by a key that is not the leaf's.
    let stranger = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let forged = sign(&header("ES256", &chain.x5c()), &production(), &stranger);
    assert_invalid(verifier.verify(&forged), BAD_SIGNATURE);
}

#[test]
fn another_apps_transaction_is_invalid() {
    let chain = Chain::new();
    let jws = chain.sign(&transaction("com.other.app", "Production", SIGNED_DATE));
    assert_invalid(
        chain.verifier(EnvironmentRule::Production).verify(&jws),
        "bundleId 'com.other.app' is not the expected 'com.example.quintet'",
    );

    let verifier = JwsVerifier::new(vec![chain.root.der()], None, EnvironmentRule::Production);
    assert_invalid(
        verifier.verify(&chain.sign(&production())),
        NO_BUNDLE_ID_CONFIGURED,
    );
}

#[test]
fn a_chain_ending_at_another_root_is_invalid() {
    let configured = Chain::new();
    let other = Chain::new();
    let jws = other.sign(&production());
    assert_invalid(
        configured
            .verifier(EnvironmentRule::Production)
            .verify(&jws),
        NOT_AN_APPLE_ROOT,
    );
}

#[test]
fn a_chain_that_names_the_configured_root_but_was_not_signed_by_it_is_invalid() {
    let configured = Chain::new();
    // Same names as the configured chain, other keys.
    let impostor = Chain::new();
    let x5c = vec![
        impostor.leaf.der(),
        impostor.intermediate.der(),
        configured.root.der(),
    ];
    let jws = sign(&header("ES256", &x5c), &production(), &impostor.leaf.key);
    assert_invalid(
        configured
            .verifier(EnvironmentRule::Production)
            .verify(&jws),
        "the intermediate certificate is not signed by the root",
    );

    // A leaf issued by another intermediate of the same name.
    let x5c = vec![
        impostor.leaf.der(),
        configured.intermediate.der(),
        configured.root.der(),
    ];
    let jws = sign(&header("ES256", &x5c), &production(), &impostor.leaf.key);
    assert_invalid(
        configured
            .verifier(EnvironmentRule::Production)
            .verify(&jws),
        "the leaf certificate is not signed by the intermediate",
    );
}

#[test]
fn a_leaf_without_apples_marker_is_invalid() {
    let chain = Chain::with(
        Spec::intermediate(),
        Spec {
            marker: None,
            ..Spec::leaf()
        },
    );
    assert_invalid(
        chain
            .verifier(EnvironmentRule::Production)
            .verify(&chain.sign(&production())),
        "missing Apple marker extension on the leaf",
    );
}

#[test]
fn an_intermediate_without_apples_marker_or_not_a_ca_is_invalid() {
    let unmarked = Chain::with(
        Spec {
            marker: None,
            ..Spec::intermediate()
        },
        Spec::leaf(),
    );
    assert_invalid(
        unmarked
            .verifier(EnvironmentRule::Production)
            .verify(&unmarked.sign(&production())),
        "missing Apple marker extension on the intermediate",
    );

    let not_ca = Chain::with(
        Spec {
            ca: false,
            ..Spec::intermediate()
        },
        Spec::leaf(),
    );
    assert_invalid(
        not_ca
            .verifier(EnvironmentRule::Production)
            .verify(&not_ca.sign(&production())),
        "not a CA",
    );
}

#[test]
fn a_signed_date_outside_a_certificates_validity_is_invalid() {
    let chain = Chain::with(
        Spec::intermediate(),
        Spec {
            not_before: datetime!(2025-01-01 0:00 UTC),
            not_after: datetime!(2025-06-01 0:00 UTC),
            ..Spec::leaf()
        },
    );
    let verifier = chain.verifier(EnvironmentRule::Production);
    let at = |date: OffsetDateTime| {
        let ms = i64::try_from(date.unix_timestamp_nanos() / 1_000_000).unwrap();
        chain.sign(&transaction(BUNDLE, "Production", ms))
    };
    assert!(matches!(
        verifier.verify(&at(datetime!(2025-03-01 0:00 UTC))),
        Validation::Valid { .. }
    ));
    for outside in [
        datetime!(2024-12-31 23:59:59 UTC),
        datetime!(2025-06-01 0:00:01 UTC),
    ] {
        assert_invalid(
            verifier.verify(&at(outside)),
            "certificate not valid at signedDate: the leaf",
        );
    }

    let expired_intermediate = Chain::with(
        Spec {
            not_after: datetime!(2025-01-01 0:00 UTC),
            ..Spec::intermediate()
        },
        Spec::leaf(),
    );
    assert_invalid(
        expired_intermediate
            .verifier(EnvironmentRule::Production)
            .verify(&expired_intermediate.sign(&production())),
        "certificate not valid at signedDate: the intermediate",
    );

    let mut undated = production();
    undated
        .as_object_mut()
        .expect("object")
        .remove("signedDate");
    assert_invalid(verifier.verify(&chain.sign(&undated)), "signedDate");
}

#[test]
fn an_algorithm_other_than_es256_is_invalid() {
    let chain = Chain::new();
    let verifier = chain.verifier(EnvironmentRule::Production);
    for alg in ["ES384", "HS256", "none", "es256"] {
        let jws = sign(&header(alg, &chain.x5c()), &production(), &chain.leaf.key);
        assert_invalid(
            verifier.verify(&jws),
            &format!("JWS alg '{alg}' is not ES256"),
        );
    }
}

#[test]
fn environments_are_the_configured_ones() {
    let chain = Chain::new();
    let signed = |environment: &str| chain.sign(&transaction(BUNDLE, environment, SIGNED_DATE));
    let accepted = |rule: EnvironmentRule, environment: &str| match chain
        .verifier(rule)
        .verify(&signed(environment))
    {
        Validation::Valid {
            environment: said, ..
        } => {
            assert_eq!(said, environment);
            true
        }
        Validation::Invalid { reason, .. } => {
            assert!(
                reason.contains(&format!("environment '{environment}' is not accepted")),
                "{reason}"
            );
            false
        }
    };
    assert!(accepted(EnvironmentRule::Production, "Production"));
    assert!(!accepted(EnvironmentRule::Production, "Sandbox"));
    assert!(!accepted(EnvironmentRule::Production, "Xcode"));
    assert!(accepted(EnvironmentRule::Sandbox, "Sandbox"));
    assert!(!accepted(EnvironmentRule::Sandbox, "Production"));
    assert!(!accepted(EnvironmentRule::Sandbox, "LocalTesting"));
    for environment in ["Production", "Sandbox", "Xcode", "LocalTesting"] {
        assert!(accepted(EnvironmentRule::Any, environment));
    }
}

#[test]
fn without_a_configured_root_every_jws_is_invalid() {
    let chain = Chain::new();
    let verifier = JwsVerifier::new(Vec::new(), Some(BUNDLE.into()), EnvironmentRule::Any);
    assert_invalid(
        verifier.verify(&chain.sign(&production())),
        NO_ROOT_CONFIGURED,
    );
    assert_eq!(
        NO_ROOT_CONFIGURED,
        "no Apple root certificate configured (--apple-root-cert)"
    );
}

#[test]
fn garbage_is_invalid_and_says_why() {
    let chain = Chain::new();
    let verifier = chain.verifier(EnvironmentRule::Production);
    let good = chain.sign(&production());
    let parts: Vec<&str> = good.split('.').collect();
    let with_x5c = |x5c: Value| {
        let header = json!({ "alg": "ES256", "x5c": x5c });
        format!("{}.{}.{}", b64(&header), parts[1], parts[2])
    };
    let leaf = STANDARD.encode(chain.leaf.der());
    let root = STANDARD.encode(chain.root.der());
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "not a JWS"),
        ("garbage".into(), "not a JWS"),
        ("a.b.c.d".into(), "not a JWS"),
        ("..".into(), "header is not"),
        ("a.b.c".into(), "header is not"),
        ("!!!.b.c".into(), "header is not base64url"),
        (
            format!("{}.{}.{}", b64(&json!([1, 2])), parts[1], parts[2]),
            "header is not valid",
        ),
        (
            format!("{}.{}.{}", b64(&json!({ "x5c": [] })), parts[1], parts[2]),
            "alg",
        ),
        (with_x5c(json!([])), "x5c holds 0 certificates"),
        (
            with_x5c(json!([leaf.clone(), root.clone()])),
            "x5c holds 2 certificates",
        ),
        (
            with_x5c(json!([leaf.clone(), "***", root.clone()])),
            "intermediate certificate is not base64",
        ),
        (
            with_x5c(json!([
                leaf.clone(),
                STANDARD.encode(b"not DER"),
                root.clone()
            ])),
            "intermediate certificate is not X.509",
        ),
        (
            with_x5c(json!([
                leaf.clone(),
                root.clone(),
                root.clone(),
                root.clone()
            ])),
            "x5c holds 4 certificates",
        ),
        (
            format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
            "signature is not base64url",
        ),
        (format!("{}.{}.AAAA", parts[0], parts[1]), BAD_SIGNATURE),
    ];
    for (jws, expected) in cases {
        assert_invalid(verifier.verify(&jws), expected);
    }

    // Validly signed, but not a transaction.
    let notification = json!({ "notificationType": "TEST", "signedDate": SIGNED_DATE });
    assert_invalid(
        verifier.verify(&chain.sign(&notification)),
        "payload has no bundleId",
    );
    let mut no_id = production();
    no_id
        .as_object_mut()
        .expect("object")
        .remove("transactionId");
    assert_invalid(verifier.verify(&chain.sign(&no_id)), "no transactionId");
    let payload = URL_SAFE_NO_PAD.encode(b"[not json");
    let input = format!("{}.{payload}", parts[0]);
    let rng = SystemRandom::new();
    let signer = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &chain.leaf.key.serialize_der(),
        &rng,
    )
    .expect("key");
    let signature = signer.sign(&rng, input.as_bytes()).expect("signs");
    let jws = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
    assert_invalid(verifier.verify(&jws), "payload is not valid");
}

#[test]
fn roots_load_from_pem_and_der_files() {
    let chain = Chain::new();
    let unrelated = Spec::root("Some Other Root").self_signed();
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = dir.path().join("roots.pem");
    std::fs::write(
        &pem,
        format!(
            "# two roots\n{}{}",
            unrelated.cert.pem(),
            chain.root.cert.pem()
        ),
    )
    .expect("write");
    let der = dir.path().join("AppleRootCA-G3.cer");
    std::fs::write(&der, chain.root.der()).expect("write");
    let jws = chain.sign(&production());

    for paths in [vec![pem.clone()], vec![der.clone()]] {
        let verifier =
            JwsVerifier::from_pem_files(&paths, Some(BUNDLE.into()), EnvironmentRule::Production)
                .expect("loads");
        assert!(
            matches!(verifier.verify(&jws), Validation::Valid { .. }),
            "{paths:?}"
        );
    }
    let only_unrelated = dir.path().join("other.pem");
    std::fs::write(&only_unrelated, unrelated.cert.pem()).expect("write");
    let verifier = JwsVerifier::from_pem_files(
        &[only_unrelated],
        Some(BUNDLE.into()),
        EnvironmentRule::Production,
    )
    .expect("loads");
    assert_invalid(verifier.verify(&jws), NOT_AN_APPLE_ROOT);

    let missing = dir.path().join("missing.pem");
    let err = JwsVerifier::from_pem_files(&[missing], None, EnvironmentRule::Production)
        .expect_err("refused");
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello").expect("write");
    let err = JwsVerifier::from_pem_files(&[junk], None, EnvironmentRule::Production)
        .expect_err("refused");
    assert!(err.to_string().contains("junk.pem"), "{err}");
}

/// A legacy validator that counts its calls.
#[derive(Default)]
struct Legacy {
    calls: AtomicUsize,
}

#[async_trait]
impl ReceiptValidator for Legacy {
    async fn validate(&self, _receipt: &str) -> Result<Validation, ValidatorError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Validation::invalid("legacy"))
    }
}

#[tokio::test]
async fn the_router_sends_jws_to_the_verifier_and_the_rest_to_verify_receipt() {
    let chain = Chain::new();
    let legacy = Arc::new(Legacy::default());
    let router = AnyValidator::new(
        legacy.clone(),
        Arc::new(chain.verifier(EnvironmentRule::Production)),
    );

    let valid = router
        .validate(&chain.sign(&production()))
        .await
        .expect("validates");
    assert!(matches!(valid, Validation::Valid { .. }), "{valid:?}");
    let invalid = router.validate("a.b.c").await.expect("validates");
    assert!(
        matches!(&invalid, Validation::Invalid { reason, .. } if reason != "legacy"),
        "{invalid:?}"
    );
    assert_eq!(legacy.calls.load(Ordering::SeqCst), 0);

    let legacy_answer = router
        .validate("ewoJInNpZ25hdHVyZSIgPSAiQW==")
        .await
        .expect("validates");
    assert_eq!(legacy_answer, Validation::invalid("legacy"));
    assert_eq!(legacy.calls.load(Ordering::SeqCst), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any one changed character of a valid JWS makes it invalid, and
    /// nothing panics.
    #[test]
    fn one_changed_character_is_never_valid(position in any::<prop::sample::Index>(), replacement in "[A-Za-z0-9_.=-]") {
        let (verifier, jws) = &*FIXTURE;
        let mut changed: Vec<char> = jws.chars().collect();
        let at = position.index(changed.len());
        changed[at] = replacement.chars().next().expect("one character");
        let changed: String = changed.into_iter().collect();
        prop_assume!(&changed != jws);
        let verdict = verifier.verify(&changed);
        prop_assert!(matches!(verdict, Validation::Invalid { .. }), "{:?}", verdict);
    }

    /// Arbitrary text is INVALID, never a panic.
    #[test]
    fn arbitrary_text_is_invalid(text in "\\PC{0,200}", dotted in "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}") {
        let (verifier, _) = &*FIXTURE;
        for input in [&text, &dotted] {
            let verdict = verifier.verify(input);
            prop_assert!(matches!(verdict, Validation::Invalid { .. }), "{:?}", verdict);
        }
    }
}

/// One chain and one valid JWS, shared by the property tests (key
/// generation is the slow part).
static FIXTURE: std::sync::LazyLock<(JwsVerifier, String)> = std::sync::LazyLock::new(|| {
    let chain = Chain::new();
    let jws = chain.sign(&production());
    let verifier = chain.verifier(EnvironmentRule::Production);
    assert!(matches!(verifier.verify(&jws), Validation::Valid { .. }));
    (verifier, jws)
});

/// One chain for the fuzz targets below, which sign payloads with its leaf.
static SIGNER: std::sync::LazyLock<Chain> = std::sync::LazyLock::new(Chain::new);

/// The validity of every certificate of [`Chain::new`], in ms since the epoch.
const VALID_FROM_MS: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
const VALID_TO_MS: i64 = 2_019_686_400_000; // 2034-01-01T00:00:00Z

mod fuzz_targets {
    use proptest::prelude::*;
    use serde_json::Value;
    use testkit::fuzz;

    use super::*;

    fn verifier() -> JwsVerifier {
        SIGNER.verifier(EnvironmentRule::Production)
    }

    fn is_invalid(validation: &Validation) -> bool {
        matches!(validation, Validation::Invalid { transactions, .. } if transactions.is_empty())
    }

    /// A JWS part: base64url of JSON, of any bytes, or any text.
    fn part() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => fuzz::json_bytes(fuzz::json_value()).prop_map(|b| fuzz::base64url(&b)),
            1 => fuzz::bytes(64).prop_map(|b| fuzz::base64url(&b)),
            1 => fuzz::text(24),
        ]
    }

    /// An `x5c` entry: one of the chain's certificates, base64 of other
    /// bytes, or any text.
    fn certificate() -> BoxedStrategy<Value> {
        prop_oneof![
            2 => proptest::sample::select(SIGNER.x5c()).prop_map(|der| Value::from(STANDARD.encode(der))),
            1 => fuzz::bytes(300).prop_map(|b| Value::from(STANDARD.encode(b))),
            1 => fuzz::json_scalar(),
        ]
        .boxed()
    }

    /// A header close to a real one: alg, x5c and crit of any value.
    fn header() -> BoxedStrategy<Value> {
        fuzz::object_with(vec![
            (
                "alg",
                fuzz::plausible(
                    prop_oneof![Just("ES256"), Just("RS256"), Just("none")]
                        .prop_map(Value::from)
                        .boxed(),
                ),
            ),
            (
                "x5c",
                fuzz::plausible(
                    proptest::collection::vec(certificate(), 0..5)
                        .prop_map(Value::from)
                        .boxed(),
                ),
            ),
            ("crit", fuzz::json_value()),
        ])
    }

    /// A transaction payload: each field most often the value a valid one
    /// has, else another plausible value, null, any text or any JSON.
    fn payload() -> BoxedStrategy<Value> {
        let field = |good: Value, others: BoxedStrategy<Value>| {
            prop_oneof![
                6 => Just(good),
                1 => others,
                1 => Just(Value::Null),
                1 => fuzz::text(8).prop_map(Value::from),
                1 => fuzz::json_value(),
            ]
            .boxed()
        };
        let strings = |values: Vec<&'static str>| {
            proptest::sample::select(values)
                .prop_map(Value::from)
                .boxed()
        };
        fuzz::object_with(vec![
            (
                "transactionId",
                field(TRANSACTION.into(), strings(vec!["", "1"])),
            ),
            ("productId", field(PRODUCT.into(), strings(vec![""]))),
            (
                "bundleId",
                field(BUNDLE.into(), strings(vec!["com.example.other", ""])),
            ),
            (
                "environment",
                field(
                    "Production".into(),
                    strings(vec!["Sandbox", "Xcode", "production"]),
                ),
            ),
            (
                "signedDate",
                field(
                    SIGNED_DATE.into(),
                    prop_oneof![
                        Just(VALID_FROM_MS),
                        Just(VALID_FROM_MS - 1),
                        Just(VALID_TO_MS),
                        Just(VALID_TO_MS + 1),
                        any::<i64>(),
                    ]
                    .prop_map(Value::from)
                    .boxed(),
                ),
            ),
        ])
    }

    /// A payload field as the verifier reads it: absent or null is none,
    /// a string is itself, and any other type makes the payload unreadable.
    fn string_field(payload: &Value, name: &str) -> Result<Option<String>, ()> {
        match payload.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(()),
        }
    }

    /// What a signed, chained `payload` (an object) must verify to: the
    /// transaction it names, or `None` for INVALID.
    fn expected(payload: &Value) -> Option<Transaction> {
        let transaction_id = string_field(payload, "transactionId").ok()?;
        let product_id = string_field(payload, "productId").ok()?;
        let bundle_id = string_field(payload, "bundleId").ok()?;
        let environment = string_field(payload, "environment").ok()?;
        let signed_date = match payload.get("signedDate") {
            None | Some(Value::Null) => return None,
            Some(date) => date.as_i64()?,
        };
        let in_validity = (VALID_FROM_MS..=VALID_TO_MS).contains(&signed_date);
        let transaction_id = transaction_id.filter(|id| !id.is_empty())?;
        (in_validity
            && bundle_id.as_deref() == Some(BUNDLE)
            && environment.as_deref() == Some("Production"))
        .then_some(Transaction {
            transaction_id,
            product_id,
        })
    }

    proptest! {
        #![proptest_config(fuzz::config(256))]

        /// Any text, and any three base64url parts (JSON, bytes or text):
        /// never a panic, always INVALID naming no transaction.
        #[test]
        fn fuzz_jws_any_text(
            text in fuzz::text(300),
            (header, payload, signature) in (part(), part(), part()),
        ) {
            let verifier = verifier();
            let verdict = verifier.verify(&text);
            prop_assert!(is_invalid(&verdict), "{:?}", verdict);
            let verdict = verifier.verify(&format!("{header}.{payload}.{signature}"));
            prop_assert!(is_invalid(&verdict), "{:?}", verdict);
        }

        /// A header close to a real one (the chain's own certificates among
        /// others), any payload, a signature that is not the leaf's: never
        /// a panic, always INVALID.
        #[test]
        fn fuzz_jws_unsigned_headers(
            header in header(),
            payload in prop_oneof![payload(), fuzz::json_value()],
            signature in prop_oneof![fuzz::bytes(80), Just(vec![0u8; 64])],
        ) {
            let jws = format!(
                "{}.{}.{}",
                fuzz::base64url(&serde_json::to_vec(&header).expect("json")),
                fuzz::base64url(&serde_json::to_vec(&payload).expect("json")),
                fuzz::base64url(&signature),
            );
            let verdict = verifier().verify(&jws);
            prop_assert!(is_invalid(&verdict), "{:?}", verdict);
        }

        /// Payloads of any shape, signed by the leaf of a chain the verifier
        /// trusts: never a panic; VALID exactly when the payload is a
        /// transaction of the configured app, in production, signed while
        /// the chain was valid, naming a transaction id, and then with that
        /// transaction.
        #[test]
        fn fuzz_jws_signed_payloads(payload in prop_oneof![4 => payload(), 1 => fuzz::json_value()]) {
            let verdict = verifier().verify(&SIGNER.sign(&payload));
            match (payload.is_object().then(|| expected(&payload)), verdict) {
                (Some(Some(transaction)), Validation::Valid { environment, transactions }) => {
                    prop_assert_eq!(environment, "Production");
                    prop_assert_eq!(transactions, vec![transaction]);
                }
                (Some(None), verdict) => prop_assert!(is_invalid(&verdict), "{} gave {:?}", payload, verdict),
                // serde also reads a struct from an array of its fields; only
                // Apple's key can sign one, so other shapes are held to not
                // panicking.
                (None, _) => {}
                (Some(expected), verdict) => {
                    prop_assert!(false, "{} gave {:?}, expected {:?}", payload, verdict, expected);
                }
            }
        }
    }
}
