//! `DynamoDB` kv store (aws-sdk-dynamodb) on the seed's table shape: table
//! `key_value_table` by default, partition key `key` (S), no sort key, so an
//! existing seed table is used as it is. Not here: the key provider (see
//! [`super::aws_kms`]), SDK set-up (see [`super::aws`]) and opening the table
//! (see [`platform::aws::dynamodb`]).
//!
//! Item layout quintet writes (format 1):
//! ```text
//! key S | format N "1" | key_id S | data_key B (wrapped) | nonce B (12) | ciphertext B (‖ tag) | size N (plaintext bytes)
//! ```
//! Items written by seed 000 have no `format`: `value` is iv(12) ‖ tag(16) ‖
//! ciphertext, as a base64 string (S) or raw bytes (B), and `data_key` holds
//! the KMS ciphertext blob the way its writer stored it: raw B, the PHP
//! twin's B of base64 text, base64 S, or the Erlang server's
//! base64(base64(blob)) S. Every reading of it is offered, most likely first
//! (see [`seed_key_readings`]); the vault tries them in order. They read
//! back as [`RecordFormat::SeedLegacy`] (no associated data). Rotation
//! rewraps them in place and keeps the layout: the new blob is stored with
//! as many base64 layers and in the same attribute type as the old one, a
//! `key_id` is added (the originals ignore it), `value` stays, and so does
//! the absence of `format` (format is detected by that attribute).
//!
//! Seed-format records quintet writes (`--kv-write-format seed`) take the
//! PHP twin's layout: `value` S = base64(iv ‖ tag ‖ ciphertext), `data_key`
//! B = the base64 text of the blob, plus `key_id` and `size`.
//!
//! Item size: `DynamoDB` refuses items over 400 KB (409,600 bytes, counted as
//! the UTF-8 lengths of attribute names plus the sizes of their values).
//! `put` computes that size itself, counting numbers as their decimal length
//! plus one (more than `DynamoDB` counts), and refuses anything over
//! [`MAX_ITEM_BYTES`] = 400,000 bytes with `StoreError::TooLarge` before
//! calling `DynamoDB`. The margin below 409,600 covers any difference in how
//! `DynamoDB` counts. With a 1 KiB key, a KMS key ARN and wrapped key, the
//! largest value that fits is about 398 KB.
//!
//! Listing is a `Scan` (table order, not key order) with a `begins_with`
//! filter, projecting only `key`, `size` and `value`: quintet's items have
//! no `value`, so their ciphertext is not transferred; seed items have no
//! `size`, so their size is taken from `value`'s length. Reads (`GetItem`,
//! `Scan`) are strongly consistent, so a listing sees every acknowledged write.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use platform::aws::dynamodb::{KeyedTable, describe_table, open_table};
use platform::backend::{BackendError, CloseGate, FailureKind};

use super::aws::AwsSettings;
use crate::domain::record::{NONCE_LEN, TAG_LEN};
use crate::domain::{
    Entry, KeyPrefix, KvKey, Page, PageLimit, RecordFormat, SealedRecord, SeedKeyReading,
    WrappedKey, encode_seed_key, seed_key_readings,
};
use crate::ports::{KvStore, StoreError};

/// The engine name in errors.
const ENGINE: &str = "dynamodb";

/// The seed's table name.
pub const DEFAULT_TABLE: &str = "key_value_table";
/// Largest item `put` sends (`DynamoDB`'s limit is 409,600 bytes; see the module docs).
pub const MAX_ITEM_BYTES: usize = 400_000;
/// Most items one `Scan` call evaluates when a prefix filter is set.
const FILTERED_SCAN_LIMIT: i32 = 1000;

const KEY: &str = "key";
const FORMAT: &str = "format";
const KEY_ID: &str = "key_id";
const DATA_KEY: &str = "data_key";
const NONCE: &str = "nonce";
const CIPHERTEXT: &str = "ciphertext";
const SIZE: &str = "size";
const VALUE: &str = "value";
const FORMAT_V1: &str = "1";
/// The PHP twin stores `data_key` as B holding base64 text: one layer.
const PHP_KEY_LAYERS: u8 = 1;
/// Seed values are iv ‖ tag ‖ ciphertext.
const SEED_OVERHEAD: u64 = (NONCE_LEN + TAG_LEN) as u64;

/// Base64 as the seed may have written it: standard alphabet, padding optional.
const SEED_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const SEED_BASE64_URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

type Item = HashMap<String, AttributeValue>;

/// A [`KvStore`] on one `DynamoDB` table.
pub struct DynamoKvStore {
    client: Client,
    table: String,
    closed: CloseGate,
}

impl std::fmt::Debug for DynamoKvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoKvStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl DynamoKvStore {
    /// Connects to `table` and checks its key schema (partition key `key`,
    /// type S, no sort key). A missing table is created (on-demand billing)
    /// when `create_if_missing`, and is an error otherwise.
    pub async fn connect(
        settings: &AwsSettings,
        table: &str,
        create_if_missing: bool,
    ) -> Result<Self, StoreError> {
        let spec = KeyedTable {
            name: table,
            partition_key: KEY,
            needed_by: "quintet",
        };
        let client = open_table(settings, &spec, create_if_missing)
            .await
            .map_err(|e| BackendError::new(ENGINE, "connect", FailureKind::Other, e))?;
        Ok(Self {
            client,
            table: table.to_owned(),
            closed: CloseGate::default(),
        })
    }

    /// The table this store uses.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn ensure_open(&self) -> Result<(), StoreError> {
        Ok(self.closed.check(ENGINE)?)
    }

    fn unavailable<E, R>(operation: &'static str, error: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        StoreError::Unavailable(BackendError::aws(ENGINE, operation, error))
    }

    /// `true` if the update happened, `false` if its condition failed.
    async fn conditional_update(
        &self,
        key: &KvKey,
        condition: &str,
        names: HashMap<String, String>,
        values: HashMap<String, AttributeValue>,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.as_str().to_owned()))
            .update_expression("SET #kid = :nid, #dk = :ndk")
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        Self::applied("UpdateItem", result)
    }

    /// The whole item under `key` as stored (strongly consistent), `None` if absent.
    async fn stored_item(&self, key: &KvKey) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, s(key.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Self::unavailable("GetItem", e))?;
        Ok(out.item.filter(|item| !item.is_empty()))
    }

    /// `true` if a conditional write happened, `false` if its condition failed.
    fn applied<T, E, R>(
        operation: &'static str,
        result: Result<T, SdkError<E, R>>,
    ) -> Result<bool, StoreError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error().and_then(ProvideErrorMetadata::code)
                    == Some("ConditionalCheckFailedException") =>
            {
                Ok(false)
            }
            Err(e) => Err(Self::unavailable(operation, e)),
        }
    }
}

/// The item's size as `DynamoDB` counts it, rounded up (numbers count their
/// decimal length plus one; `DynamoDB` counts about half that).
fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::N(n) => n.len() + 1,
                    AttributeValue::B(b) => b.as_ref().len(),
                    // quintet writes only S, N and B.
                    _ => 0,
                }
        })
        .sum()
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn b(bytes: impl Into<Vec<u8>>) -> AttributeValue {
    AttributeValue::B(Blob::new(bytes))
}

fn names(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The item quintet writes for `record` under `key`.
fn item_of(key: &KvKey, record: &SealedRecord) -> Item {
    let mut item = Item::with_capacity(7);
    item.insert(KEY.into(), s(key.as_str()));
    item.insert(DATA_KEY.into(), b(record.wrapped.bytes.clone()));
    item.insert(
        SIZE.into(),
        AttributeValue::N(record.plaintext_len().to_string()),
    );
    match record.format {
        RecordFormat::V1 => {
            item.insert(FORMAT.into(), AttributeValue::N(FORMAT_V1.into()));
            item.insert(KEY_ID.into(), s(record.wrapped.key_id.as_str()));
            item.insert(NONCE.into(), b(record.nonce.to_vec()));
            item.insert(CIPHERTEXT.into(), b(record.ciphertext.clone()));
        }
        // The PHP twin's layout (`--kv-write-format seed`, or a seed record
        // copied between stores), whose absence of associated data the
        // format implies: value S = base64(iv ‖ tag ‖ ciphertext), data_key
        // B = base64 text of the blob.
        RecordFormat::SeedLegacy => {
            if !record.wrapped.key_id.is_empty() {
                item.insert(KEY_ID.into(), s(record.wrapped.key_id.as_str()));
            }
            item.insert(
                DATA_KEY.into(),
                b(encode_seed_key(&record.wrapped.bytes, PHP_KEY_LAYERS)),
            );
            let split = record.ciphertext.len().saturating_sub(TAG_LEN);
            let (body, tag) = record.ciphertext.split_at(split);
            let mut value = Vec::with_capacity(NONCE_LEN + record.ciphertext.len());
            value.extend_from_slice(&record.nonce);
            value.extend_from_slice(tag);
            value.extend_from_slice(body);
            item.insert(VALUE.into(), s(SEED_BASE64.encode(value)));
        }
    }
    item
}

/// What is wrong with a stored attribute that should hold bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum AttributeProblem {
    #[error("is neither binary nor a base64 string")]
    NeitherBinaryNorString,
    #[error("is a string but not base64")]
    NotBase64,
}

/// The readings of a seed item's stored `data_key`, most likely first.
fn data_key_readings(value: &AttributeValue) -> Result<Vec<SeedKeyReading>, AttributeProblem> {
    let readings = match value {
        AttributeValue::B(blob) => seed_key_readings(blob.as_ref(), 0),
        AttributeValue::S(text) => seed_key_readings(text.as_bytes(), 1),
        _ => return Err(AttributeProblem::NeitherBinaryNorString),
    };
    if readings.is_empty() {
        return Err(AttributeProblem::NotBase64);
    }
    Ok(readings)
}

/// `blob` stored as a seed item's `data_key` in the same attribute type and
/// with as many base64 layers as `reading` of `stored` found.
fn data_key_like(stored: &AttributeValue, reading: &SeedKeyReading, blob: &[u8]) -> AttributeValue {
    let encoded = encode_seed_key(blob, reading.layers);
    match stored {
        AttributeValue::S(_) => s(String::from_utf8_lossy(&encoded).into_owned()),
        _ => b(encoded),
    }
}

/// The item for `record` under `key`, refused as [`StoreError::TooLarge`]
/// over [`MAX_ITEM_BYTES`] before `DynamoDB` is called.
fn sized_item(key: &KvKey, record: &SealedRecord) -> Result<Item, StoreError> {
    let item = item_of(key, record);
    let size = item_size(&item);
    if size > MAX_ITEM_BYTES {
        return Err(StoreError::TooLarge {
            size,
            limit: MAX_ITEM_BYTES,
        });
    }
    Ok(item)
}

/// Bytes from a B attribute, or from an S attribute holding base64 (seed values).
fn bytes_or_base64(value: &AttributeValue) -> Result<Vec<u8>, AttributeProblem> {
    match value {
        AttributeValue::B(blob) => Ok(blob.as_ref().to_vec()),
        AttributeValue::S(text) => {
            let text = text.trim();
            SEED_BASE64
                .decode(text)
                .or_else(|_| SEED_BASE64_URL.decode(text))
                .map_err(|_| AttributeProblem::NotBase64)
        }
        _ => Err(AttributeProblem::NeitherBinaryNorString),
    }
}

fn record_of(key: &KvKey, item: &Item) -> Result<SealedRecord, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let key_id = match item.get(KEY_ID) {
        None => String::new(),
        Some(AttributeValue::S(id)) => id.clone(),
        Some(_) => return Err(corrupt("key_id is not a string".into())),
    };
    let Some(format) = item.get(FORMAT) else {
        // Seed 000's layout.
        let value = item
            .get(VALUE)
            .ok_or_else(|| corrupt("item has neither format nor value".into()))?;
        let value = bytes_or_base64(value).map_err(|e| corrupt(format!("value {e}")))?;
        let data_key = item
            .get(DATA_KEY)
            .ok_or_else(|| corrupt("seed item without data_key".into()))?;
        let mut readings = data_key_readings(data_key)
            .map_err(|e| corrupt(format!("data_key {e}")))?
            .into_iter()
            .map(|r| r.blob);
        let first = readings.next().unwrap_or_default();
        let mut record =
            SealedRecord::from_seed(&value, first).map_err(|e| corrupt(e.to_string()))?;
        record.wrapped.key_id = key_id;
        record.wrapped_alternates = readings.collect();
        return Ok(record);
    };
    match format {
        AttributeValue::N(n) if n == FORMAT_V1 => {}
        AttributeValue::N(n) => {
            return Err(corrupt(format!(
                "unknown format {}",
                n.chars().take(16).collect::<String>()
            )));
        }
        _ => return Err(corrupt("format is not a number".into())),
    }
    let binary = |name: &str| match item.get(name) {
        Some(AttributeValue::B(blob)) => Ok(blob.as_ref()),
        Some(_) => Err(corrupt(format!("{name} is not binary"))),
        None => Err(corrupt(format!("{name} is missing"))),
    };
    let nonce = binary(NONCE)?;
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| corrupt(format!("nonce of {} bytes", nonce.len())))?;
    let ciphertext = binary(CIPHERTEXT)?;
    if ciphertext.len() < TAG_LEN {
        return Err(corrupt("ciphertext shorter than its tag".into()));
    }
    if !item.contains_key(KEY_ID) {
        return Err(corrupt("key_id is missing".into()));
    }
    Ok(SealedRecord {
        format: RecordFormat::V1,
        wrapped: WrappedKey {
            key_id,
            bytes: binary(DATA_KEY)?.to_vec(),
        },
        wrapped_alternates: Vec::new(),
        nonce,
        ciphertext: ciphertext.to_vec(),
    })
}

/// A listed item (projected to key, size, value) as an entry.
fn entry_of(item: &Item) -> Result<Entry, StoreError> {
    let Some(AttributeValue::S(key)) = item.get(KEY) else {
        return Err(StoreError::Corrupt {
            key: "?".into(),
            reason: "listed item without a string key".into(),
        });
    };
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.chars().take(64).collect(),
        reason,
    };
    let parsed = KvKey::new(key.clone()).map_err(|e| corrupt(e.to_string()))?;
    let size = match (item.get(SIZE), item.get(VALUE)) {
        (Some(AttributeValue::N(n)), _) => n
            .parse::<u64>()
            .map_err(|_| corrupt("size is not a whole number".into()))?,
        (_, Some(AttributeValue::B(blob))) => {
            (blob.as_ref().len() as u64).saturating_sub(SEED_OVERHEAD)
        }
        // Base64 length without decoding: 4 characters per 3 bytes.
        (_, Some(AttributeValue::S(text))) => {
            (text.trim().trim_end_matches('=').len() as u64 * 3 / 4).saturating_sub(SEED_OVERHEAD)
        }
        _ => return Err(corrupt("item has neither size nor value".into())),
    };
    Ok(Entry { key: parsed, size })
}

#[async_trait]
impl KvStore for DynamoKvStore {
    fn engine(&self) -> &'static str {
        "aws.dynamodb"
    }

    async fn put(&self, key: &KvKey, record: &SealedRecord) -> Result<(), StoreError> {
        self.ensure_open()?;
        let item = sized_item(key, record)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| Self::unavailable("PutItem", e))?;
        Ok(())
    }

    async fn get(&self, key: &KvKey) -> Result<Option<SealedRecord>, StoreError> {
        self.ensure_open()?;
        match self.stored_item(key).await? {
            Some(item) => record_of(key, &item).map(Some),
            None => Ok(None),
        }
    }

    async fn delete(&self, key: &KvKey) -> Result<bool, StoreError> {
        self.ensure_open()?;
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, s(key.as_str()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| Self::unavailable("DeleteItem", e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn page(
        &self,
        prefix: &KeyPrefix,
        after: Option<&KvKey>,
        limit: PageLimit,
    ) -> Result<Page, StoreError> {
        self.ensure_open()?;
        let limit = limit.as_usize().max(1);
        let mut start: Option<Item> =
            after.map(|k| HashMap::from([(KEY.to_owned(), s(k.as_str()))]));
        let mut entries: Vec<Entry> = Vec::with_capacity(limit.min(1000));
        let more = loop {
            let want = limit - entries.len();
            let mut request = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .projection_expression("#k, #s, #v")
                .set_exclusive_start_key(start.take());
            if prefix.as_str().is_empty() {
                request = request
                    .set_expression_attribute_names(Some(names(&[
                        ("#k", KEY),
                        ("#s", SIZE),
                        ("#v", VALUE),
                    ])))
                    .limit(i32::try_from(want).unwrap_or(i32::MAX));
            } else {
                request = request
                    .filter_expression("begins_with(#k, :p)")
                    .set_expression_attribute_names(Some(names(&[
                        ("#k", KEY),
                        ("#s", SIZE),
                        ("#v", VALUE),
                    ])))
                    .expression_attribute_values(":p", s(prefix.as_str()))
                    .limit(FILTERED_SCAN_LIMIT);
            }
            let out = request
                .send()
                .await
                .map_err(|e| Self::unavailable("Scan", e))?;
            let items = out.items.unwrap_or_default();
            let count = items.len();
            let mut stopped_early = false;
            for (i, item) in items.iter().enumerate() {
                entries.push(entry_of(item)?);
                if entries.len() == limit {
                    stopped_early = i + 1 < count;
                    break;
                }
            }
            let table_ended = out
                .last_evaluated_key
                .as_ref()
                .is_none_or(std::collections::HashMap::is_empty);
            if entries.len() == limit {
                break stopped_early || !table_ended;
            }
            if table_ended {
                break false;
            }
            start = out.last_evaluated_key;
        };
        let next = if more {
            entries.last().map(|e| e.key.clone())
        } else {
            None
        };
        Ok(Page {
            entries,
            next,
            corrupt: Vec::new(),
        })
    }

    async fn rewrap(
        &self,
        key: &KvKey,
        old: &WrappedKey,
        new: &WrappedKey,
    ) -> Result<bool, StoreError> {
        self.ensure_open()?;
        let new_values = || {
            HashMap::from([
                (":nid".to_owned(), s(new.key_id.as_str())),
                (":ndk".to_owned(), b(new.bytes.clone())),
            ])
        };
        // Format 1: one conditional update on the wrapped key as written.
        let mut values = new_values();
        values.insert(":oid".into(), s(old.key_id.as_str()));
        values.insert(":odk".into(), b(old.bytes.clone()));
        let updated = self
            .conditional_update(
                key,
                "attribute_exists(#f) AND #kid = :oid AND #dk = :odk",
                names(&[("#f", FORMAT), ("#kid", KEY_ID), ("#dk", DATA_KEY)]),
                values,
            )
            .await?;
        if updated {
            return Ok(true);
        }
        // A seed item stores its wrapped key in its writer's layout (and has
        // no key_id until first rewrapped): read what is stored, find the
        // reading that is `old`, and compare-and-set on exactly what is
        // stored, writing the new blob in the same layout.
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, s(key.as_str()))
            .consistent_read(true)
            .projection_expression("#f, #kid, #dk")
            .set_expression_attribute_names(Some(names(&[
                ("#f", FORMAT),
                ("#kid", KEY_ID),
                ("#dk", DATA_KEY),
            ])))
            .send()
            .await
            .map_err(|e| Self::unavailable("GetItem", e))?;
        let Some(item) = out.item.filter(|i| !i.is_empty()) else {
            return Ok(false);
        };
        if item.contains_key(FORMAT) {
            return Ok(false);
        }
        let stored_id = match item.get(KEY_ID) {
            None => "",
            Some(AttributeValue::S(id)) => id.as_str(),
            Some(_) => return Ok(false),
        };
        let Some(stored_dk) = item.get(DATA_KEY) else {
            return Ok(false);
        };
        if stored_id != old.key_id {
            return Ok(false);
        }
        let Some(reading) = data_key_readings(stored_dk)
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.blob == old.bytes)
        else {
            return Ok(false);
        };
        let mut values = new_values();
        values.insert(
            ":ndk".into(),
            data_key_like(stored_dk, &reading, &new.bytes),
        );
        values.insert(":odk".into(), stored_dk.clone());
        let (condition, names) = if item.contains_key(KEY_ID) {
            values.insert(":oid".into(), s(stored_id));
            (
                "attribute_not_exists(#f) AND #kid = :oid AND #dk = :odk",
                names(&[("#f", FORMAT), ("#kid", KEY_ID), ("#dk", DATA_KEY)]),
            )
        } else {
            (
                "attribute_exists(#dk) AND attribute_not_exists(#f) AND attribute_not_exists(#kid) \
                 AND #dk = :odk",
                names(&[("#f", FORMAT), ("#kid", KEY_ID), ("#dk", DATA_KEY)]),
            )
        };
        self.conditional_update(key, condition, names, values).await
    }

    async fn replace(
        &self,
        key: &KvKey,
        old: &SealedRecord,
        new: &SealedRecord,
    ) -> Result<bool, StoreError> {
        self.ensure_open()?;
        let item = sized_item(key, new)?;
        // Compare-and-set on the attributes as stored (a seed item's may be
        // S or B, base64 once or twice): read them, check they still are
        // `old`, and put only if none of them changed since.
        let Some(stored) = self.stored_item(key).await? else {
            return Ok(false);
        };
        if record_of(key, &stored).ok().as_ref() != Some(old) {
            return Ok(false);
        }
        let mut condition = Vec::new();
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        for (i, attribute) in [FORMAT, KEY_ID, DATA_KEY, NONCE, CIPHERTEXT, VALUE]
            .into_iter()
            .enumerate()
        {
            names.insert(format!("#a{i}"), attribute.to_owned());
            match stored.get(attribute) {
                Some(value) => {
                    condition.push(format!("#a{i} = :a{i}"));
                    values.insert(format!(":a{i}"), value.clone());
                }
                None => condition.push(format!("attribute_not_exists(#a{i})")),
            }
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition.join(" AND "))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        Self::applied("PutItem", result)
    }

    fn keeps_seed_layout(&self) -> bool {
        true
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.ensure_open()?;
        describe_table(&self.client, &self.table)
            .await
            .map(|_| ())
            .map_err(|e| Self::unavailable("DescribeTable", e))
    }

    async fn close(&self) {
        self.closed.close();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use testkit::fuzz;

    use super::*;

    /// An attribute of any type, or one close to what a kv item holds.
    fn attribute() -> impl Strategy<Value = AttributeValue> {
        prop_oneof![
            fuzz::text(30).prop_map(AttributeValue::S),
            fuzz::bytes(80).prop_map(|b| AttributeValue::S(fuzz::base64(&b))),
            fuzz::bytes(60)
                .prop_map(|b| AttributeValue::S(fuzz::base64(fuzz::base64(&b).as_bytes()))),
            fuzz::bytes(80).prop_map(b),
            fuzz::bytes(60).prop_map(|bytes| b(fuzz::base64(&bytes).into_bytes())),
            any::<[u8; NONCE_LEN]>().prop_map(|nonce| b(nonce.to_vec())),
            prop_oneof![
                Just("1".to_owned()),
                Just("2".to_owned()),
                fuzz::text(8),
                any::<i64>().prop_map(|n| n.to_string())
            ]
            .prop_map(AttributeValue::N),
            any::<bool>().prop_map(AttributeValue::Bool),
            Just(AttributeValue::Null(true)),
            Just(AttributeValue::L(Vec::new())),
        ]
    }

    /// An item with some of kv's attribute names (and another), each of
    /// any attribute type.
    fn item() -> impl Strategy<Value = Item> {
        let names = vec![
            KEY, FORMAT, KEY_ID, DATA_KEY, NONCE, CIPHERTEXT, SIZE, VALUE, "other",
        ];
        proptest::collection::vec((proptest::sample::select(names), attribute()), 0..9).prop_map(
            |pairs| {
                pairs
                    .into_iter()
                    .map(|(name, value)| (name.to_owned(), value))
                    .collect()
            },
        )
    }

    fn sealed(format: RecordFormat) -> impl Strategy<Value = SealedRecord> {
        (
            fuzz::text(20),
            fuzz::bytes(100),
            any::<[u8; NONCE_LEN]>(),
            proptest::collection::vec(any::<u8>(), TAG_LEN..80),
        )
            .prop_map(move |(key_id, bytes, nonce, ciphertext)| SealedRecord {
                format,
                wrapped: WrappedKey { key_id, bytes },
                wrapped_alternates: Vec::new(),
                nonce,
                ciphertext,
            })
    }

    proptest! {
        #![proptest_config(fuzz::config(256))]

        /// Any item a table hands back: never a panic; a record read from
        /// it has a whole tag, and a listed entry a valid key.
        #[test]
        fn fuzz_dynamodb_item(item in item()) {
            if let Ok(record) = record_of(&key("k"), &item) {
                prop_assert!(record.ciphertext.len() >= TAG_LEN);
            }
            if let Ok(entry) = entry_of(&item) {
                prop_assert!(matches!(item.get(KEY), Some(AttributeValue::S(k)) if k == entry.key.as_str()));
            }
        }

        /// Every record, in either layout, as an item with one attribute
        /// changed: never a panic; unchanged, a format-1 item reads back as
        /// its record, and a seed item as its value and data key.
        #[test]
        fn fuzz_dynamodb_record_items(
            record in prop_oneof![sealed(RecordFormat::V1), sealed(RecordFormat::SeedLegacy)],
            change in proptest::option::of((
                proptest::sample::select(&[FORMAT, KEY_ID, DATA_KEY, NONCE, CIPHERTEXT, SIZE, VALUE][..]),
                proptest::option::of(attribute()),
            )),
        ) {
            let mut item = item_of(&key("k"), &record);
            let changed = change.is_some();
            if let Some((name, value)) = change {
                match value {
                    Some(value) => item.insert(name.to_owned(), value),
                    None => item.remove(name),
                };
            }
            let read = record_of(&key("k"), &item);
            let _ = entry_of(&item);
            if !changed {
                let read = read.expect("an unchanged item is read");
                prop_assert_eq!(read.nonce, record.nonce);
                prop_assert_eq!(&read.ciphertext, &record.ciphertext);
                prop_assert_eq!(&read.wrapped.key_id, &record.wrapped.key_id);
                if record.format == RecordFormat::V1 {
                    prop_assert_eq!(read, record);
                } else {
                    // The stored data key is one of its readings.
                    prop_assert!(
                        read.wrapped.bytes == record.wrapped.bytes
                            || read.wrapped_alternates.contains(&record.wrapped.bytes)
                    );
                }
            }
        }
    }

    fn key(name: &str) -> KvKey {
        KvKey::new(name).expect("valid key")
    }

    fn v1() -> SealedRecord {
        SealedRecord {
            format: RecordFormat::V1,
            wrapped: WrappedKey {
                key_id: "arn:aws:kms:us-east-1:123456789012:key/abc".into(),
                bytes: vec![7; 180],
            },
            wrapped_alternates: Vec::new(),
            nonce: [3; 12],
            ciphertext: vec![9; 40],
        }
    }

    #[test]
    fn format_1_items_round_trip() {
        let record = v1();
        let item = item_of(&key("k"), &record);
        assert_eq!(record_of(&key("k"), &item).expect("parses"), record);
        assert_eq!(entry_of(&item).expect("entry").size, 24);
    }

    #[test]
    fn seed_items_round_trip_through_the_seed_layout() {
        let mut value = vec![1u8; 12];
        value.extend([2u8; 16]);
        value.extend([5u8; 10]);
        let record = SealedRecord::from_seed(&value, vec![8; 100]).expect("seed");
        let item = item_of(&key("k"), &record);
        assert!(!item.contains_key(FORMAT));
        // The PHP twin's layout: value S of base64, data_key B of base64 text.
        assert!(matches!(item.get(VALUE), Some(AttributeValue::S(_))));
        let php_key = base64::engine::general_purpose::STANDARD.encode([8u8; 100]);
        assert_eq!(item.get(DATA_KEY), Some(&b(php_key.clone().into_bytes())));
        // Read back: the blob first, the stored text as the one other reading.
        let read = record_of(&key("k"), &item).expect("parses");
        assert_eq!(read.wrapped_alternates, vec![php_key.into_bytes()]);
        assert_eq!(
            SealedRecord {
                wrapped_alternates: Vec::new(),
                ..read
            },
            record
        );

        let encoded = base64::engine::general_purpose::STANDARD.encode(&value);
        let seed_item = HashMap::from([
            (KEY.to_owned(), s("k")),
            (VALUE.to_owned(), s(encoded.as_str())),
            (
                DATA_KEY.to_owned(),
                s(base64::engine::general_purpose::STANDARD.encode([8u8; 100])),
            ),
        ]);
        assert_eq!(record_of(&key("k"), &seed_item).expect("parses"), record);
        assert_eq!(entry_of(&seed_item).expect("entry").size, 10);
    }

    #[test]
    fn malformed_items_are_corrupt() {
        let good = item_of(&key("k"), &v1());
        for (name, value) in [
            (FORMAT, AttributeValue::N("2".into())),
            (NONCE, b(vec![0; 11])),
            (CIPHERTEXT, b(vec![0; 15])),
            (DATA_KEY, s("not binary")),
        ] {
            let mut item = good.clone();
            item.insert(name.into(), value);
            assert!(
                matches!(record_of(&key("k"), &item), Err(StoreError::Corrupt { .. })),
                "{name}"
            );
        }
        let seed = HashMap::from([
            (KEY.to_owned(), s("k")),
            (VALUE.to_owned(), s("%%% not base64")),
            (DATA_KEY.to_owned(), b(vec![1; 4])),
        ]);
        assert!(matches!(
            record_of(&key("k"), &seed),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn item_size_counts_names_and_values() {
        let item = item_of(&key("k"), &v1());
        // names: key format key_id data_key nonce ciphertext size = 3+6+6+8+5+10+4
        let names = 42;
        let values = 1 + 2 + 42 + 180 + 12 + 40 + 3;
        assert_eq!(item_size(&item), names + values);
    }

    #[test]
    fn the_default_table_name_is_valid() {
        assert!(platform::aws::dynamodb::validate_table_name(DEFAULT_TABLE).is_ok());
    }
}
