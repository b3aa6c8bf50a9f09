//! The record a store keeps for one key: everything needed to decrypt the
//! value given the key provider, and nothing that would let anyone else.
//!
//! Binary layout (format 1), as stored by the redb and PostgreSQL adapters:
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
    pub key_id: String,
    pub bytes: Vec<u8>,
}

/// An encrypted value and its wrapped data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    pub format: RecordFormat,
    pub wrapped: WrappedKey,
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

pub const NONCE_LEN: usize = 12;
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
    /// Plaintext length of the value.
    pub fn plaintext_len(&self) -> u64 {
        self.ciphertext.len().saturating_sub(TAG_LEN) as u64
    }

    /// The stored form (format 1 only; legacy items are rewritten as format 1
    /// when they are set again).
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
            nonce: nonce.try_into().map_err(|_| CorruptRecord("iv".into()))?,
            ciphertext,
        })
    }
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
    use super::*;

    fn sample() -> SealedRecord {
        SealedRecord {
            format: RecordFormat::V1,
            wrapped: WrappedKey {
                key_id: "local:v1:abcd".into(),
                bytes: vec![7; 60],
            },
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
}
