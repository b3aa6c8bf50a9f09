//! The record a store keeps for one key: everything needed to decrypt the
//! value given the key provider, and nothing that would let anyone else.
//!
//! Binary layout (format 1), as stored by the redb and `PostgreSQL` adapters:
//! ```text
//! u8   format = 1
//! u16  key-id length (big endian), then the key provider's key id (UTF-8)
//! u32  wrapped data key length (big endian), then the wrapped data key
//! [12] nonce
//! ..   ciphertext ‖ 16-byte GCM tag
//! ```

/// How a record was sealed; decides its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// quintet's format: the associated data binds namespace and key.
    V1,
    /// An item written by seed 000 (DynamoDB): no associated data.
    SeedLegacy,
}

/// A data key wrapped (encrypted) by a key provider, with the id of the
/// provider key that wrapped it. Safe to store and to log the id of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WrappedKey {
    /// The id of the key that wrapped it (empty in seed items).
    pub key_id: String,
    /// The wrapped data key.
    pub bytes: Vec<u8>,
}

/// An encrypted value and its wrapped data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    /// The layout the record was sealed in.
    pub format: RecordFormat,
    /// Its wrapped data key.
    pub wrapped: WrappedKey,
    /// Other readings of the wrapped key, tried in order when the provider
    /// refuses `wrapped` (only seed items whose stored `data_key` can be
    /// read more than one way have any; see [`seed_key_readings`]).
    pub wrapped_alternates: Vec<Vec<u8>>,
    /// The AES-GCM nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

/// Bytes in an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes in an AES-GCM tag.
pub const TAG_LEN: usize = 16;
const FORMAT_V1: u8 = 1;
/// A longest key id (KMS key ARNs are ~80 bytes).
const MAX_KEY_ID: usize = 2048;
/// A largest wrapped key (KMS ciphertext blobs are ~200 bytes).
const MAX_WRAPPED: usize = 64 * 1024;

/// A stored record could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt record: {0}")]
pub struct CorruptRecord(pub String);

impl SealedRecord {
    /// Every reading of the wrapped data key, to offer the provider in turn:
    /// the stored one, then [`Self::wrapped_alternates`].
    pub fn wrapped_readings(&self) -> Vec<WrappedKey> {
        std::iter::once(&self.wrapped.bytes)
            .chain(&self.wrapped_alternates)
            .map(|bytes| WrappedKey {
                key_id: self.wrapped.key_id.clone(),
                bytes: bytes.clone(),
            })
            .collect()
    }

    /// Plaintext length of the value.
    pub fn plaintext_len(&self) -> u64 {
        self.ciphertext.len().saturating_sub(TAG_LEN) as u64
    }

    /// The stored form (format 1 only; legacy items are rewritten as format 1
    /// when they are set again).
    // Key ids are at most 2,048 bytes (KMS ARNs; local ids are 20) and
    // wrapped keys a few hundred: their lengths fit the fields.
    #[allow(clippy::cast_possible_truncation)]
    pub fn encode(&self) -> Vec<u8> {
        let id = self.wrapped.key_id.as_bytes();
        let mut out = Vec::with_capacity(
            1 + 2 + id.len() + 4 + self.wrapped.bytes.len() + NONCE_LEN + self.ciphertext.len(),
        );
        out.push(FORMAT_V1);
        out.extend_from_slice(&(id.len() as u16).to_be_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(&(self.wrapped.bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.wrapped.bytes);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// A record from its stored bytes (quintet's layout).
    pub fn decode(bytes: &[u8]) -> Result<Self, CorruptRecord> {
        let mut reader = Reader(bytes);
        let format = reader.take(1)?[0];
        if format != FORMAT_V1 {
            return Err(CorruptRecord(format!("unknown record format {format}")));
        }
        let id_len = u16::from_be_bytes(reader.array()?) as usize;
        if id_len > MAX_KEY_ID {
            return Err(CorruptRecord(format!("key id of {id_len} bytes")));
        }
        let key_id = std::str::from_utf8(reader.take(id_len)?)
            .map_err(|_| CorruptRecord("key id is not UTF-8".into()))?
            .to_owned();
        let wrapped_len = u32::from_be_bytes(reader.array()?) as usize;
        if wrapped_len > MAX_WRAPPED {
            return Err(CorruptRecord(format!("wrapped key of {wrapped_len} bytes")));
        }
        let wrapped = reader.take(wrapped_len)?.to_vec();
        let nonce = reader.array()?;
        let ciphertext = reader.0.to_vec();
        if ciphertext.len() < TAG_LEN {
            return Err(CorruptRecord("ciphertext shorter than its tag".into()));
        }
        Ok(Self {
            format: RecordFormat::V1,
            wrapped: WrappedKey {
                key_id,
                bytes: wrapped,
            },
            wrapped_alternates: Vec::new(),
            nonce,
            ciphertext,
        })
    }

    /// A record from seed 000's item layout: `value` = iv(12) ‖ tag(16) ‖
    /// ciphertext, `data_key` = the KMS-wrapped data key.
    pub fn from_seed(value: &[u8], data_key: Vec<u8>) -> Result<Self, CorruptRecord> {
        if value.len() < NONCE_LEN + TAG_LEN {
            return Err(CorruptRecord(format!(
                "seed value of {} bytes is shorter than iv and tag",
                value.len()
            )));
        }
        let (nonce, rest) = value.split_at(NONCE_LEN);
        let (tag, body) = rest.split_at(TAG_LEN);
        let mut ciphertext = Vec::with_capacity(body.len() + TAG_LEN);
        ciphertext.extend_from_slice(body);
        ciphertext.extend_from_slice(tag);
        Ok(Self {
            format: RecordFormat::SeedLegacy,
            wrapped: WrappedKey {
                key_id: String::new(),
                bytes: data_key,
            },
            wrapped_alternates: Vec::new(),
            nonce: nonce.try_into().map_err(|_| CorruptRecord("iv".into()))?,
            ciphertext,
        })
    }
}

/// Most base64 layers a seed item's `data_key` is read through: the Erlang
/// server stored base64(base64(blob)).
pub const MAX_SEED_KEY_LAYERS: u8 = 2;

/// One reading of a seed item's stored `data_key`: the KMS ciphertext blob
/// after peeling `layers` of base64 off what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedKeyReading {
    /// How many base64 layers were taken off.
    pub layers: u8,
    /// The wrapped data key as the key provider gave it.
    pub blob: Vec<u8>,
}

/// The ways a seed item's stored `data_key` can hold the KMS blob, most
/// likely first, at most [`MAX_SEED_KEY_LAYERS`] + 1 of them.
///
/// The original writers differ (spec §1): a raw blob as B; the PHP twin's
/// base64 text of the blob stored as B; base64(blob) as S; the Erlang
/// server's base64(base64(blob)) as S (erlcloud hands the blob over base64
/// already and the server encodes it again). A KMS blob is binary, so it is
/// practically never valid base64 text: base64 layers are peeled while what
/// is left still decodes, and the deepest reading comes first. A shallower
/// reading follows only when what it holds decoded as base64 too, which a
/// blob does by chance alone; the caller tries them in order. `min_layers`
/// is 1 for a string attribute (text is never the blob itself).
pub fn seed_key_readings(stored: &[u8], min_layers: u8) -> Vec<SeedKeyReading> {
    let mut layers = vec![stored.to_vec()];
    while layers.len() <= usize::from(MAX_SEED_KEY_LAYERS) {
        let Some(decoded) = layers.last().and_then(|l| decode_base64_text(l)) else {
            break;
        };
        layers.push(decoded);
    }
    layers
        .into_iter()
        .enumerate()
        .rev()
        .filter_map(|(depth, blob)| {
            let layers = u8::try_from(depth).ok()?;
            (layers >= min_layers).then_some(SeedKeyReading { layers, blob })
        })
        .collect()
}

/// `layers` of standard base64 (padded, as PHP's `base64_encode` and
/// Erlang's `base64:encode` write it) around `blob`.
pub fn encode_seed_key(blob: &[u8], layers: u8) -> Vec<u8> {
    use base64::Engine as _;
    let mut out = blob.to_vec();
    for _ in 0..layers {
        out = base64::engine::general_purpose::STANDARD
            .encode(&out)
            .into_bytes();
    }
    out
}

/// `text` decoded if it is base64 text (standard or URL-safe alphabet,
/// padding optional, surrounding ASCII whitespace ignored) of at least one
/// byte; `None` for anything else, binary blobs included.
fn decode_base64_text(text: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);
    let text = text.trim_ascii();
    if text.is_empty() {
        return None;
    }
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .ok()
        .filter(|decoded| !decoded.is_empty())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CorruptRecord> {
        if self.0.len() < n {
            return Err(CorruptRecord("record is truncated".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CorruptRecord> {
        let bytes = self.take(N)?;
        bytes
            .try_into()
            .map_err(|_| CorruptRecord("record is truncated".into()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use testkit::fuzz;

    use super::*;

    fn record() -> impl Strategy<Value = SealedRecord> {
        (
            fuzz::text(40),
            fuzz::bytes(300),
            any::<[u8; NONCE_LEN]>(),
            proptest::collection::vec(any::<u8>(), TAG_LEN..200),
        )
            .prop_map(|(key_id, bytes, nonce, ciphertext)| SealedRecord {
                format: RecordFormat::V1,
                wrapped: WrappedKey { key_id, bytes },
                wrapped_alternates: Vec::new(),
                nonce,
                ciphertext,
            })
    }

    /// A blob that is never base64 text (a NUL is neither the alphabet
    /// nor whitespace), as a KMS ciphertext blob practically never is.
    fn binary_blob() -> impl Strategy<Value = Vec<u8>> {
        (fuzz::bytes(200), any::<prop::sample::Index>()).prop_map(|(mut blob, at)| {
            blob.insert(at.index(blob.len() + 1), 0);
            blob
        })
    }

    proptest! {
        #![proptest_config(fuzz::config(256))]

        /// Any stored bytes: never a panic; a record is read only from
        /// exactly its own encoding (nothing dropped, nothing ignored),
        /// with a whole tag; every valid record's encoding is read back.
        #[test]
        fn fuzz_sealed_record_decode(
            (stored, original, mutation) in prop_oneof![
                1 => fuzz::bytes(120).prop_map(|b| (b, None, fuzz::Mutation::None)),
                4 => (record(), fuzz::mutation()).prop_map(|(record, mutation)| {
                    (mutation.apply(record.encode()), Some(record), mutation)
                }),
            ],
        ) {
            match SealedRecord::decode(&stored) {
                Ok(read) => {
                    prop_assert_eq!(read.encode(), stored);
                    prop_assert!(read.ciphertext.len() >= TAG_LEN);
                    prop_assert!(read.wrapped_alternates.is_empty());
                }
                Err(CorruptRecord(reason)) => {
                    prop_assert!(!reason.is_empty());
                    prop_assert!(
                        !(original.is_some() && matches!(mutation, fuzz::Mutation::None)),
                        "an unchanged encoding was refused: {}", reason
                    );
                }
            }
        }

        /// Any seed `value`: never a panic; a record exactly when it holds
        /// an iv and a tag, the tag moved after the ciphertext.
        #[test]
        fn fuzz_seed_layout(value in fuzz::bytes(80), data_key in fuzz::bytes(40)) {
            match SealedRecord::from_seed(&value, data_key.clone()) {
                Ok(record) => {
                    prop_assert!(value.len() >= NONCE_LEN + TAG_LEN);
                    prop_assert_eq!(&record.nonce[..], &value[..NONCE_LEN]);
                    let mut expected = value[NONCE_LEN + TAG_LEN..].to_vec();
                    expected.extend_from_slice(&value[NONCE_LEN..NONCE_LEN + TAG_LEN]);
                    prop_assert_eq!(record.ciphertext, expected);
                    prop_assert_eq!(record.wrapped.bytes, data_key);
                    prop_assert_eq!(record.format, RecordFormat::SeedLegacy);
                }
                Err(_) => prop_assert!(value.len() < NONCE_LEN + TAG_LEN),
            }
        }

        /// Any stored `data_key`: never a panic; at most three readings,
        /// deepest first, none shallower than asked; a binary blob under
        /// 0, 1 or 2 layers of base64 is read back first, at its depth.
        #[test]
        fn fuzz_seed_key_readings(
            stored in prop_oneof![
                fuzz::bytes(120),
                fuzz::bytes(90).prop_map(|b| fuzz::base64(&b).into_bytes()),
                fuzz::bytes(60).prop_map(|b| fuzz::base64(fuzz::base64(&b).as_bytes()).into_bytes()),
                fuzz::text(60).prop_map(String::into_bytes),
            ],
            min_layers in 0u8..=1,
            blob in binary_blob(),
            layers in 0..=MAX_SEED_KEY_LAYERS,
        ) {
            let readings = seed_key_readings(&stored, min_layers);
            prop_assert!(readings.len() <= usize::from(MAX_SEED_KEY_LAYERS) + 1);
            for pair in readings.windows(2) {
                prop_assert!(pair[0].layers > pair[1].layers);
            }
            for reading in &readings {
                prop_assert!(reading.layers >= min_layers);
            }
            if min_layers == 0 {
                prop_assert_eq!(readings.last().map(|r| &r.blob), Some(&stored));
            }

            let readings = seed_key_readings(&encode_seed_key(&blob, layers), min_layers);
            if layers >= min_layers {
                prop_assert_eq!(readings.first(), Some(&SeedKeyReading { layers, blob }));
            } else {
                prop_assert!(readings.is_empty());
            }
        }
    }

    fn sample() -> SealedRecord {
        SealedRecord {
            format: RecordFormat::V1,
            wrapped: WrappedKey {
                key_id: "local:v1:abcd".into(),
                bytes: vec![7; 60],
            },
            wrapped_alternates: Vec::new(),
            nonce: [3; 12],
            ciphertext: vec![9; 40],
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let record = sample();
        assert_eq!(SealedRecord::decode(&record.encode()), Ok(record));
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = sample().encode();
        for n in 0..(bytes.len() - 40 + TAG_LEN) {
            assert!(SealedRecord::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn seed_layout_moves_the_tag_to_the_end() {
        let mut value = vec![1u8; 12];
        value.extend([2u8; 16]);
        value.extend([5u8; 3]);
        let record = SealedRecord::from_seed(&value, vec![8; 4]).expect("valid");
        assert_eq!(record.nonce, [1; 12]);
        assert_eq!(
            record.ciphertext,
            [5, 5, 5, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
        );
        assert_eq!(record.plaintext_len(), 3);
        assert!(SealedRecord::from_seed(&[0; 27], vec![]).is_err());
    }

    #[test]
    fn seed_key_readings_peel_every_writer_layout_deepest_first() {
        use base64::Engine as _;
        let b64 = |b: &[u8]| {
            base64::engine::general_purpose::STANDARD
                .encode(b)
                .into_bytes()
        };
        // A blob like KMS's: binary, never base64 text.
        let blob: Vec<u8> = (0u8..=183).map(|i| i.wrapping_mul(151) ^ 0x01).collect();
        let deepest = |stored: &[u8], min| seed_key_readings(stored, min)[0].clone();
        // Raw B; the PHP twin's B of base64 text; S of base64; Erlang's S of base64(base64).
        assert_eq!(
            deepest(&blob, 0),
            SeedKeyReading {
                layers: 0,
                blob: blob.clone()
            }
        );
        assert_eq!(
            deepest(&b64(&blob), 0),
            SeedKeyReading {
                layers: 1,
                blob: blob.clone()
            }
        );
        assert_eq!(
            deepest(&b64(&blob), 1),
            SeedKeyReading {
                layers: 1,
                blob: blob.clone()
            }
        );
        assert_eq!(
            deepest(&b64(&b64(&blob)), 1),
            SeedKeyReading {
                layers: 2,
                blob: blob.clone()
            }
        );
        assert_eq!(seed_key_readings(&blob, 0).len(), 1);
        assert_eq!(seed_key_readings(&b64(&b64(&blob)), 1).len(), 2);
        // Text is never the blob itself when stored as a string.
        assert!(seed_key_readings(b"%%% not base64", 1).is_empty());
        // At most two layers are peeled, so at most three readings.
        let triple = b64(&b64(&b64(&blob)));
        let readings = seed_key_readings(&triple, 0);
        assert_eq!(
            readings.iter().map(|r| r.layers).collect::<Vec<_>>(),
            [2, 1, 0]
        );
        // Encoding back gives what was stored.
        for layers in 0..=MAX_SEED_KEY_LAYERS {
            let stored = encode_seed_key(&blob, layers);
            assert_eq!(
                deepest(&stored, 0),
                SeedKeyReading {
                    layers,
                    blob: blob.clone()
                }
            );
        }
    }
}
