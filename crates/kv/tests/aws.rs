//! The `DynamoDB` store and the AWS KMS provider against a real moto server
//! (one per test process, see `testkit::moto`). Nothing is mocked: each test
//! makes its own table and KMS keys, so they run in parallel.
// A failed expectation is the test failing: tests may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use kv::adapters::aws::{AwsSettings, StaticCredentials, sdk_config};
use kv::adapters::aws_kms::AwsKmsProvider;
use kv::adapters::dynamodb::{DynamoKvStore, MAX_ITEM_BYTES};
use kv::domain::envelope::{self, DataKey};
use kv::domain::{KeyPrefix, KvKey, Namespace, PageLimit, RecordFormat, SealedRecord, WrappedKey};
use kv::ports::{KeyProvider, KvStore, ProviderError, Refusal, StoreError};
use platform::backend::chain;
use testkit::moto::{moto_endpoint, unique_name};

async fn moto() -> AwsSettings {
    AwsSettings::moto(moto_endpoint().await)
}

async fn fresh_store() -> DynamoKvStore {
    DynamoKvStore::connect(&moto().await, &unique_name("kv"), true)
        .await
        .expect("table created on moto")
}

async fn dynamo_client() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config(&moto().await).await)
}

async fn kms_client() -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(&sdk_config(&moto().await).await)
}

/// A fresh symmetric KMS key on moto: (key id, ARN).
async fn kms_key() -> (String, String) {
    let meta = kms_client()
        .await
        .create_key()
        .description("quintet test key")
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .expect("key metadata");
    let arn = meta.arn.clone().expect("arn");
    (meta.key_id, arn)
}

async fn fresh_provider() -> AwsKmsProvider {
    let (id, _) = kms_key().await;
    AwsKmsProvider::connect(&moto().await, &id)
        .await
        .expect("provider")
}

fn key(name: &str) -> KvKey {
    KvKey::new(name).expect("valid key")
}

fn limit(n: u32) -> PageLimit {
    PageLimit::parse(Some(&n.to_string())).expect("valid limit")
}

fn record(fill: u8, plaintext_len: usize) -> SealedRecord {
    SealedRecord {
        format: RecordFormat::V1,
        wrapped: WrappedKey {
            key_id: "arn:aws:kms:us-east-1:123456789012:key/test".into(),
            bytes: vec![fill; 184],
        },
        wrapped_alternates: Vec::new(),
        nonce: [fill; 12],
        ciphertext: vec![fill; plaintext_len + 16],
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

// ---------------------------------------------------------------- DynamoDB

#[tokio::test]
async fn dynamodb_put_get_overwrite_delete() {
    let store = fresh_store().await;
    let k = key("greeting");
    assert_eq!(store.get(&k).await.expect("get"), None);

    let first = record(1, 10);
    store.put(&k, &first).await.expect("put");
    assert_eq!(store.get(&k).await.expect("get"), Some(first));

    let second = record(2, 0);
    store.put(&k, &second).await.expect("overwrite");
    assert_eq!(store.get(&k).await.expect("get"), Some(second));

    assert!(store.delete(&k).await.expect("delete"));
    assert!(!store.delete(&k).await.expect("second delete"));
    assert_eq!(store.get(&k).await.expect("get"), None);
    store.ping().await.expect("ping");
}

#[tokio::test]
async fn dynamodb_pages_by_prefix_collect_each_matching_key_once() {
    let store = fresh_store().await;
    let mut expected = HashSet::new();
    for i in 0..23 {
        let name = format!("user/{i:02}");
        store
            .put(&key(&name), &record(3, i))
            .await
            .expect("put user");
        expected.insert(name);
    }
    for i in 0..9 {
        store
            .put(&key(&format!("other/{i}")), &record(4, 1))
            .await
            .expect("put other");
    }

    let prefix = KeyPrefix::new("user/").expect("prefix");
    let mut seen = Vec::new();
    let mut after: Option<KvKey> = None;
    let mut pages = 0;
    loop {
        let page = store
            .page(&prefix, after.as_ref(), limit(5))
            .await
            .expect("page");
        pages += 1;
        assert!(page.entries.len() <= 5);
        for entry in &page.entries {
            let index: usize = entry.key.as_str()["user/".len()..]
                .parse()
                .expect("numbered");
            assert_eq!(entry.size, index as u64, "size of {}", entry.key);
            seen.push(entry.key.as_str().to_owned());
        }
        match page.next {
            Some(next) => {
                assert_eq!(Some(&next), page.entries.last().map(|e| &e.key));
                after = Some(next);
            }
            None => break,
        }
        assert!(pages < 20, "paging does not end");
    }
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates: {seen:?}");
    assert_eq!(unique, expected);
    assert!(pages >= 5, "23 keys in pages of 5 take at least 5 pages");

    // No prefix: everything, here in one page.
    let all = store
        .page(&KeyPrefix::default(), None, limit(1000))
        .await
        .expect("page all");
    assert_eq!(all.entries.len(), 32);
    assert_eq!(all.next, None);

    // A prefix nothing matches.
    let none = store
        .page(&KeyPrefix::new("nobody/").expect("prefix"), None, limit(10))
        .await
        .expect("page none");
    assert!(none.entries.is_empty());
    assert_eq!(none.next, None);
}

#[tokio::test]
async fn dynamodb_rewrap_is_compare_and_set() {
    let store = fresh_store().await;
    let k = key("rotating");
    let original = record(5, 32);
    store.put(&k, &original).await.expect("put");

    let new = WrappedKey {
        key_id: "arn:aws:kms:us-east-1:123456789012:key/new".into(),
        bytes: vec![6; 190],
    };
    assert!(
        store
            .rewrap(&k, &original.wrapped, &new)
            .await
            .expect("rewrap")
    );
    let after = store.get(&k).await.expect("get").expect("present");
    assert_eq!(after.wrapped, new);
    assert_eq!(after.nonce, original.nonce);
    assert_eq!(
        after.ciphertext, original.ciphertext,
        "ciphertext unchanged"
    );

    // The old wrapped key is stale now: nothing changes.
    let other = WrappedKey {
        key_id: "x".into(),
        bytes: vec![7; 10],
    };
    assert!(
        !store
            .rewrap(&k, &original.wrapped, &other)
            .await
            .expect("stale rewrap")
    );
    assert_eq!(store.get(&k).await.expect("get").expect("present"), after);
    // A missing key is not rewrapped (and not created).
    assert!(
        !store
            .rewrap(&key("absent"), &new, &other)
            .await
            .expect("rewrap absent")
    );
    assert_eq!(store.get(&key("absent")).await.expect("get"), None);
}

#[tokio::test]
async fn dynamodb_refuses_items_over_its_limit_and_stores_nothing() {
    let store = fresh_store().await;
    let k = key("big");
    let err = store
        .put(&k, &record(8, MAX_ITEM_BYTES))
        .await
        .expect_err("too large");
    match err {
        StoreError::TooLarge { size, limit } => {
            assert_eq!(limit, MAX_ITEM_BYTES);
            assert!(size > MAX_ITEM_BYTES, "{size}");
        }
        other => panic!("expected TooLarge, got {other}"),
    }
    assert_eq!(store.get(&k).await.expect("get"), None);

    // Just under the limit is stored and read back whole.
    let near = record(9, MAX_ITEM_BYTES - 2_000);
    store.put(&k, &near).await.expect("put near the limit");
    assert_eq!(store.get(&k).await.expect("get"), Some(near));
}

/// Writes `plaintext` the way seed 000 did: AES-256-GCM under a KMS data key
/// with no associated data; `value` = iv ‖ tag ‖ ciphertext.
fn seed_encrypt(plaintext_key: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, plaintext_key).expect("32 bytes"));
    let iv = [0x42u8; 12];
    let mut body = plaintext.to_vec();
    let tag = aead
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut body)
        .expect("seal");
    let mut value = iv.to_vec();
    value.extend_from_slice(tag.as_ref());
    value.extend_from_slice(&body);
    value
}

#[tokio::test]
async fn dynamodb_reads_seed_items_which_open_and_rotate() {
    let store = fresh_store().await;
    let (kms_id, _) = kms_key().await;
    let provider = AwsKmsProvider::connect(&moto().await, &kms_id)
        .await
        .expect("provider");
    let generated = kms_client()
        .await
        .generate_data_key()
        .key_id(&kms_id)
        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
        .send()
        .await
        .expect("GenerateDataKey");
    let dek_bytes = generated.plaintext.expect("plaintext").into_inner();
    let wrapped = generated.ciphertext_blob.expect("blob").into_inner();
    let b64 = base64::engine::general_purpose::STANDARD;
    let plaintext = b"a value the seed stored".to_vec();
    let value = seed_encrypt(&dek_bytes, &plaintext);

    // One item as the seed wrote it (value base64 S, data_key B), one with
    // the wrapped key as base64 S too.
    let dynamo = dynamo_client().await;
    for (name, data_key) in [
        (
            "seed/binary-key",
            AttributeValue::B(Blob::new(wrapped.clone())),
        ),
        ("seed/string-key", AttributeValue::S(b64.encode(&wrapped))),
    ] {
        dynamo
            .put_item()
            .table_name(store.table())
            .item("key", AttributeValue::S(name.into()))
            .item("value", AttributeValue::S(b64.encode(&value)))
            .item("data_key", data_key)
            .send()
            .await
            .expect("seed PutItem");
    }

    let ns = Namespace::default();
    for name in ["seed/binary-key", "seed/string-key"] {
        let k = key(name);
        let record = store.get(&k).await.expect("get").expect("present");
        assert_eq!(record.format, RecordFormat::SeedLegacy, "{name}");
        assert_eq!(record.wrapped.key_id, "");
        assert_eq!(record.wrapped.bytes, wrapped);
        let dek = provider
            .unwrap(&record.wrapped)
            .await
            .expect("KMS unwraps a seed key");
        assert_eq!(&dek.expose()[..], &dek_bytes[..]);
        let opened = envelope::open(&dek, record.clone(), &ns, &k).expect("opens");
        assert_eq!(opened, plaintext, "{name}");

        // Rotation rewraps it in place; it stays a seed item and still opens.
        let new = provider.wrap(&dek).await.expect("wrap");
        assert!(
            store
                .rewrap(&k, &record.wrapped, &new)
                .await
                .expect("rewrap")
        );
        assert!(
            !store
                .rewrap(&k, &record.wrapped, &new)
                .await
                .expect("stale rewrap")
        );
        let rotated = store.get(&k).await.expect("get").expect("present");
        assert_eq!(rotated.format, RecordFormat::SeedLegacy);
        assert_eq!(rotated.wrapped, new);
        assert_eq!(rotated.ciphertext, record.ciphertext);
        let dek = provider.unwrap(&rotated.wrapped).await.expect("unwrap new");
        assert_eq!(
            envelope::open(&dek, rotated.clone(), &ns, &k).expect("opens"),
            plaintext
        );
        // And a second rotation of the rewrapped seed item works as well.
        let newer = provider.wrap(&dek).await.expect("wrap again");
        assert!(
            store
                .rewrap(&k, &rotated.wrapped, &newer)
                .await
                .expect("rewrap again")
        );
    }

    let page = store
        .page(&KeyPrefix::new("seed/").expect("prefix"), None, limit(10))
        .await
        .expect("page");
    assert_eq!(page.entries.len(), 2);
    for entry in page.entries {
        assert_eq!(entry.size, plaintext.len() as u64, "{}", entry.key);
    }
}

#[tokio::test]
async fn dynamodb_unparsable_items_are_corrupt() {
    let store = fresh_store().await;
    let dynamo = dynamo_client().await;
    dynamo
        .put_item()
        .table_name(store.table())
        .item("key", AttributeValue::S("broken".into()))
        .item("format", AttributeValue::N("1".into()))
        .item("key_id", AttributeValue::S("k".into()))
        .item("data_key", AttributeValue::B(Blob::new(vec![1; 8])))
        .item("nonce", AttributeValue::B(Blob::new(vec![1; 5])))
        .item("ciphertext", AttributeValue::B(Blob::new(vec![1; 20])))
        .send()
        .await
        .expect("PutItem");
    dynamo
        .put_item()
        .table_name(store.table())
        .item("key", AttributeValue::S("not-base64".into()))
        .item("value", AttributeValue::S("%%%".into()))
        .item("data_key", AttributeValue::B(Blob::new(vec![1; 8])))
        .send()
        .await
        .expect("PutItem");
    for name in ["broken", "not-base64"] {
        match store.get(&key(name)).await {
            Err(StoreError::Corrupt { key, .. }) => assert_eq!(key, name),
            other => panic!("expected Corrupt for {name}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn dynamodb_closed_store_is_unavailable() {
    let store = fresh_store().await;
    store.close().await;
    let k = key("k");
    assert!(matches!(
        store.get(&k).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.put(&k, &record(1, 1)).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.page(&KeyPrefix::default(), None, limit(10)).await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn dynamodb_missing_table_is_an_error_unless_created() {
    let name = unique_name("absent");
    let err = DynamoKvStore::connect(&moto().await, &name, false)
        .await
        .expect_err("missing table");
    assert!(
        matches!(&err, StoreError::Unavailable(m) if chain(m).contains("does not exist") && chain(m).contains(&name)),
        "{err}"
    );
    // Created once, then connecting again (even with create) finds it.
    DynamoKvStore::connect(&moto().await, &name, true)
        .await
        .expect("create");
    DynamoKvStore::connect(&moto().await, &name, false)
        .await
        .expect("exists now");
}

#[tokio::test]
async fn dynamodb_refuses_a_table_with_another_key_schema() {
    let name = unique_name("wrong-schema");
    dynamo_client()
        .await
        .create_table()
        .table_name(&name)
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .expect("schema"),
        )
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .expect("definition"),
        )
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable");
    let err = DynamoKvStore::connect(&moto().await, &name, true)
        .await
        .expect_err("wrong schema");
    assert!(chain(&err).contains("partition key 'key'"), "{err}");
}

// ---------------------------------------------------------------- KMS

#[tokio::test]
async fn kms_generate_then_unwrap_gives_the_same_key() {
    let provider = fresh_provider().await;
    assert_eq!(provider.kind(), "aws-kms");
    let (dek, wrapped) = provider.generate().await.expect("generate");
    assert_eq!(
        wrapped.key_id,
        provider.current_key_id().await.expect("current")
    );
    assert!(
        wrapped.key_id.starts_with("arn:aws:kms:"),
        "{}",
        wrapped.key_id
    );
    assert_ne!(&wrapped.bytes[..], &dek.expose()[..]);
    let unwrapped = provider.unwrap(&wrapped).await.expect("unwrap");
    assert_eq!(unwrapped.expose(), dek.expose());

    // Two data keys differ.
    let (other, _) = provider.generate().await.expect("generate");
    assert_ne!(other.expose(), dek.expose());
}

#[tokio::test]
async fn kms_altered_wrapped_key_is_refused() {
    let provider = fresh_provider().await;
    let (_, wrapped) = provider.generate().await.expect("generate");
    for at in [wrapped.bytes.len() - 1, wrapped.bytes.len() / 2] {
        let mut altered = wrapped.clone();
        altered.bytes[at] ^= 0x01;
        match provider.unwrap(&altered).await {
            Err(ProviderError::Refused(Refusal::Kms(error))) => {
                assert_eq!(error.operation(), "Decrypt", "{error}");
            }
            other => panic!("flipping byte {at}: expected Refused, got {other:?}"),
        }
    }
    // A key from another KMS key, named as this one's: refused as well.
    let (_, foreign) = fresh_provider().await.generate().await.expect("generate");
    let misnamed = WrappedKey {
        key_id: wrapped.key_id.clone(),
        bytes: foreign.bytes,
    };
    assert!(matches!(
        provider.unwrap(&misnamed).await,
        Err(ProviderError::Refused(_))
    ));
}

#[tokio::test]
async fn kms_unwraps_without_a_key_id_as_seed_items_need() {
    let provider = fresh_provider().await;
    let (dek, wrapped) = provider.generate().await.expect("generate");
    let anonymous = WrappedKey {
        key_id: String::new(),
        bytes: wrapped.bytes,
    };
    let unwrapped = provider.unwrap(&anonymous).await.expect("unwrap");
    assert_eq!(unwrapped.expose(), dek.expose());
}

#[tokio::test]
async fn kms_wrap_then_unwrap() {
    let provider = fresh_provider().await;
    let dek = DataKey::generate().expect("rng");
    let wrapped = provider.wrap(&dek).await.expect("wrap");
    assert_eq!(
        wrapped.key_id,
        provider.current_key_id().await.expect("current")
    );
    let unwrapped = provider.unwrap(&wrapped).await.expect("unwrap");
    assert_eq!(unwrapped.expose(), dek.expose());
}

#[tokio::test]
async fn kms_alias_resolves_to_the_key_arn() {
    let (id, arn) = kms_key().await;
    let alias = format!("alias/{}", unique_name("quintet"));
    kms_client()
        .await
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&id)
        .send()
        .await
        .expect("CreateAlias");
    let provider = AwsKmsProvider::connect(&moto().await, &alias)
        .await
        .expect("provider by alias");
    assert_eq!(provider.configured_key_id(), alias);
    assert_eq!(provider.current_key_id().await.expect("current"), arn);
    let (dek, wrapped) = provider.generate().await.expect("generate");
    assert_eq!(wrapped.key_id, arn);
    assert_eq!(
        provider.unwrap(&wrapped).await.expect("unwrap").expose(),
        dek.expose()
    );

    // By ARN too.
    let by_arn = AwsKmsProvider::connect(&moto().await, &arn)
        .await
        .expect("provider by ARN");
    assert_eq!(by_arn.current_key_id().await.expect("current"), arn);
}

#[tokio::test]
async fn kms_unknown_key_fails_at_connect() {
    let err = AwsKmsProvider::connect(&moto().await, "alias/does-not-exist")
        .await
        .expect_err("unknown key");
    assert!(matches!(err, ProviderError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn unreachable_endpoint_is_unavailable_quickly_and_names_no_secret() {
    let secret = "do-not-print-this-secret";
    let settings = AwsSettings {
        endpoint: Some(format!("http://127.0.0.1:{}", free_port())),
        region: Some("us-east-1".into()),
        max_attempts: 1,
        connect_timeout: Duration::from_millis(500),
        operation_timeout: Duration::from_secs(2),
        static_credentials: Some(StaticCredentials::new("AKIDEXAMPLE", secret)),
    };
    assert!(!format!("{settings:?}").contains(secret));
    let started = Instant::now();

    let err = AwsKmsProvider::connect(&settings, "alias/anything")
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(&err, ProviderError::Unavailable(m) if m.operation() == "DescribeKey"),
        "{err}"
    );
    assert!(!chain(&err).contains(secret));

    let provider = AwsKmsProvider::connect_unchecked(&settings, "alias/anything").await;
    let err = provider.generate().await.expect_err("generate");
    assert!(matches!(err, ProviderError::Unavailable(_)), "{err}");
    let err = provider
        .unwrap(&WrappedKey {
            key_id: String::new(),
            bytes: vec![1; 64],
        })
        .await
        .expect_err("unwrap");
    assert!(matches!(err, ProviderError::Unavailable(_)), "{err}");
    assert!(!chain(&err).contains(secret));

    let err = DynamoKvStore::connect(&settings, "key_value_table", false)
        .await
        .expect_err("store");
    assert!(
        matches!(&err, StoreError::Unavailable(m) if chain(m).contains("DescribeTable")),
        "{err}"
    );
    assert!(!chain(&err).contains(secret));

    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn kms_and_dynamodb_together_seal_and_open_through_the_vault_layout() {
    // The pieces the vault combines: a KMS data key seals a value, the store
    // keeps it, and it opens after a round trip.
    let store = fresh_store().await;
    let provider = fresh_provider().await;
    let (dek, wrapped) = provider.generate().await.expect("generate");
    let ns = Namespace::default();
    let k = key("together");
    let sealed = envelope::seal(&dek, wrapped, RecordFormat::V1, &ns, &k, b"hello").expect("seal");
    store.put(&k, &sealed).await.expect("put");
    let stored = store.get(&k).await.expect("get").expect("present");
    assert_eq!(stored.format, RecordFormat::V1);
    let dek = provider.unwrap(&stored.wrapped).await.expect("unwrap");
    assert_eq!(
        envelope::open(&dek, stored, &ns, &k).expect("open"),
        b"hello"
    );
    let listed: HashMap<String, u64> = store
        .page(&KeyPrefix::default(), None, limit(10))
        .await
        .expect("page")
        .entries
        .into_iter()
        .map(|e| (e.key.into_string(), e.size))
        .collect();
    assert_eq!(listed, HashMap::from([("together".to_owned(), 5)]));
}
