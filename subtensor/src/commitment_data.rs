//! The Commitments pallet's value types (`pallets/commitments/src/types.rs`, `docs/subtensor.md`):
//! `Registration { deposit, block, info: CommitmentInfo { fields: Vec<Data> } }`, where `Data`
//! has a hand-written codec: tag 0 is `None`, tags 1..=129 are `RawN` with N = tag − 1 bytes and
//! no length prefix, 130..=133 are 32-byte hashes, 134 a timelocked ciphertext, 135 the
//! reset-bonds flag, 136 `BigRaw` (length-prefixed), 137 a failed timelock reveal.
//!
//! Decoding never panics: unknown tags and short input are errors naming the byte offset, and a
//! field that is not raw bytes is kept as a [`Field`] so the caller can report it.

use parity_scale_codec::{Compact, Decode, Encode};

/// The most bytes one `RawN` field holds.
pub const MAX_RAW_FIELD: usize = 128;
/// The most fields one commitment holds (`MaxFields` in the runtime).
pub const MAX_FIELDS: usize = 3;

/// One field of a commitment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `Data::None`.
    None,
    /// `Data::RawN`: up to 128 bytes.
    Raw(Vec<u8>),
    /// A 32-byte hash (`BlakeTwo256`, `Sha256`, `Keccak256`, `ShaThree256`), with the variant
    /// name.
    Hash(&'static str, [u8; 32]),
    /// A drand-timelocked ciphertext, revealed by the chain at `reveal_round`.
    TimelockEncrypted {
        /// The ciphertext.
        encrypted: Vec<u8>,
        /// The drand round it opens at.
        reveal_round: u64,
    },
    /// `Data::ResetBondsFlag`.
    ResetBondsFlag,
    /// `Data::BigRaw`: length-prefixed raw bytes.
    BigRaw(Vec<u8>),
    /// A timelocked ciphertext the chain failed to reveal.
    TimelockRevealFailed {
        /// The ciphertext.
        encrypted: Vec<u8>,
        /// The drand round it was meant to open at.
        reveal_round: u64,
    },
}

impl Field {
    /// The variant's name as the runtime spells it, for messages.
    pub fn kind(&self) -> String {
        match self {
            Field::None => "None".into(),
            Field::Raw(bytes) => format!("Raw{}", bytes.len()),
            Field::Hash(name, _) => (*name).into(),
            Field::TimelockEncrypted { .. } => "TimelockEncrypted".into(),
            Field::ResetBondsFlag => "ResetBondsFlag".into(),
            Field::BigRaw(_) => "BigRaw".into(),
            Field::TimelockRevealFailed { .. } => "TimelockRevealFailed".into(),
        }
    }
}

/// A decoded `Commitments.CommitmentOf` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The deposit held for it.
    pub deposit: u64,
    /// The block it was set at.
    pub block: u32,
    /// Its fields, in order.
    pub fields: Vec<Field>,
}

impl Registration {
    /// The commitment's bytes as the Python SDK reads them: every `Raw`/`BigRaw` field
    /// concatenated in order. `Err` names the first field of another kind (a hash, a timelocked
    /// ciphertext, ...), which carries no dataset string.
    pub fn raw_bytes(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for (i, field) in self.fields.iter().enumerate() {
            match field {
                Field::Raw(bytes) | Field::BigRaw(bytes) => out.extend_from_slice(bytes),
                Field::None => {}
                other => {
                    return Err(format!(
                        "field {i} is {}, not raw bytes (only Raw fields carry a dataset \
                         commitment)",
                        other.kind()
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// Why commitment bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Commitments.CommitmentOf value: {reason} at byte {offset}")]
pub struct DecodeError {
    /// Where decoding stopped.
    pub offset: usize,
    /// What was wrong.
    pub reason: String,
}

/// A cursor over the value bytes that reports where it failed.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, reason: impl Into<String>) -> Result<T, DecodeError> {
        Err(DecodeError {
            offset: self.at,
            reason: reason.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() - self.at < n {
            return self.fail(format!(
                "needs {n} more byte(s), {} left",
                self.bytes.len() - self.at
            ));
        }
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn compact(&mut self) -> Result<u64, DecodeError> {
        let mut rest = &self.bytes[self.at..];
        let before = rest.len();
        match Compact::<u64>::decode(&mut rest) {
            Ok(v) => {
                self.at += before - rest.len();
                Ok(v.0)
            }
            Err(_) => self.fail("bad compact integer"),
        }
    }

    fn bytes_vec(&mut self, max: usize) -> Result<Vec<u8>, DecodeError> {
        let len = self.compact()?;
        if len > max as u64 {
            return self.fail(format!("length {len} exceeds the bound {max}"));
        }
        Ok(self.take(len as usize)?.to_vec())
    }
}

/// Decodes one `Data` field.
fn decode_field(r: &mut Reader<'_>) -> Result<Field, DecodeError> {
    let tag = r.u8()?;
    Ok(match tag {
        0 => Field::None,
        1..=129 => Field::Raw(r.take(tag as usize - 1)?.to_vec()),
        130 => Field::Hash("BlakeTwo256", r.array()?),
        131 => Field::Hash("Sha256", r.array()?),
        132 => Field::Hash("Keccak256", r.array()?),
        133 => Field::Hash("ShaThree256", r.array()?),
        134 | 137 => {
            let encrypted = r.bytes_vec(1024)?;
            let reveal_round = u64::from_le_bytes(r.array()?);
            if tag == 134 {
                Field::TimelockEncrypted {
                    encrypted,
                    reveal_round,
                }
            } else {
                Field::TimelockRevealFailed {
                    encrypted,
                    reveal_round,
                }
            }
        }
        135 => Field::ResetBondsFlag,
        136 => Field::BigRaw(r.bytes_vec(512)?),
        other => {
            r.at -= 1;
            return r.fail(format!("unknown Data tag {other}"));
        }
    })
}

/// Decodes a `Registration` (the value of `Commitments.CommitmentOf`). Trailing bytes are an
/// error: they would mean our idea of the type is wrong.
pub fn decode_registration(bytes: &[u8]) -> Result<Registration, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let deposit = u64::from_le_bytes(r.array()?);
    let block = u32::from_le_bytes(r.array()?);
    let count = r.compact()?;
    if count > MAX_FIELDS as u64 {
        return r.fail(format!("{count} fields exceeds MaxFields {MAX_FIELDS}"));
    }
    let mut fields = Vec::with_capacity(count as usize);
    for _ in 0..count {
        fields.push(decode_field(&mut r)?);
    }
    if r.at != bytes.len() {
        return r.fail(format!("{} trailing byte(s)", bytes.len() - r.at));
    }
    Ok(Registration {
        deposit,
        block,
        fields,
    })
}

/// Decodes a `CommitmentInfo` (`fields: BoundedVec<Data, MaxFields>`) at the start of `bytes`;
/// returns the fields and how many bytes they took (the argument of `set_commitment`).
pub fn decode_commitment_info(bytes: &[u8]) -> Result<(Vec<Field>, usize), DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let count = r.compact()?;
    if count > MAX_FIELDS as u64 {
        return r.fail(format!("{count} fields exceeds MaxFields {MAX_FIELDS}"));
    }
    let mut fields = Vec::with_capacity(count as usize);
    for _ in 0..count {
        fields.push(decode_field(&mut r)?);
    }
    Ok((fields, r.at))
}

/// SCALE bytes of `CommitmentInfo { fields: [Raw(data)] }`, the `info` argument of
/// `Commitments.set_commitment` as the Python SDK's `publish_metadata` builds it. `Err` when
/// `data` is longer than one raw field (128 bytes).
pub fn encode_commitment_info(data: &[u8]) -> Result<Vec<u8>, String> {
    if data.len() > MAX_RAW_FIELD {
        return Err(format!(
            "{} bytes does not fit one Raw field of at most {MAX_RAW_FIELD} bytes",
            data.len()
        ));
    }
    let mut out = Compact(1u32).encode();
    out.push(data.len() as u8 + 1);
    out.extend_from_slice(data);
    Ok(out)
}

/// SCALE bytes of a `Registration`, as the chain stores it (used by the test node).
pub fn encode_registration(deposit: u64, block: u32, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = deposit.encode();
    out.extend(block.encode());
    out.extend(encode_commitment_info(data)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_commitment_info_matches_the_recorded_encoding() {
        // subxt's encoding of set_commitment(1, {fields:[Raw5("hello")]}): 0x12 00 | 0100 | 04 06 68656c6c6f
        assert_eq!(
            hex::encode(encode_commitment_info(b"hello").unwrap()),
            "040668656c6c6f"
        );
    }

    #[test]
    fn registration_round_trips_and_concatenates_raw_fields() {
        let bytes = encode_registration(0, 4242, b"acme/data:c1:abc").unwrap();
        let reg = decode_registration(&bytes).unwrap();
        assert_eq!(reg.block, 4242);
        assert_eq!(reg.raw_bytes().unwrap(), b"acme/data:c1:abc");

        // Two raw fields are concatenated, as bittensor 11's `commitment` read does.
        let mut two = 0u64.encode();
        two.extend(7u32.encode());
        two.extend([8, 3, b'a', b'b', 2, b'c']);
        let reg = decode_registration(&two).unwrap();
        assert_eq!(reg.raw_bytes().unwrap(), b"abc");
    }

    #[test]
    fn other_variants_are_reported_not_crashed_on() {
        let mut bytes = 0u64.encode();
        bytes.extend(9u32.encode());
        bytes.extend([4, 130]);
        bytes.extend([7u8; 32]);
        let reg = decode_registration(&bytes).unwrap();
        let err = reg.raw_bytes().unwrap_err();
        assert!(err.contains("field 0 is BlakeTwo256"), "{err}");

        let mut timelocked = 0u64.encode();
        timelocked.extend(9u32.encode());
        timelocked.extend([4, 134, 8, 1, 2]);
        timelocked.extend(5u64.encode());
        let reg = decode_registration(&timelocked).unwrap();
        assert_eq!(
            reg.fields,
            vec![Field::TimelockEncrypted {
                encrypted: vec![1, 2],
                reveal_round: 5
            }]
        );
    }

    #[test]
    fn bad_bytes_name_the_offset() {
        let mut bytes = 0u64.encode();
        bytes.extend(9u32.encode());
        bytes.extend([4, 200]);
        let err = decode_registration(&bytes).unwrap_err();
        assert_eq!(err.offset, 13);
        assert!(err.reason.contains("unknown Data tag 200"));

        let err = decode_registration(&[1, 2, 3]).unwrap_err();
        assert!(err.reason.contains("needs 8 more byte(s), 3 left"), "{err}");

        let mut short = 0u64.encode();
        short.extend(9u32.encode());
        short.extend([4, 11, b'x']);
        assert!(decode_registration(&short).is_err());

        let mut trailing = encode_registration(0, 1, b"x").unwrap();
        trailing.push(0);
        assert!(decode_registration(&trailing)
            .unwrap_err()
            .reason
            .contains("trailing"));
        assert!(encode_commitment_info(&[0u8; 129]).is_err());
    }
}
