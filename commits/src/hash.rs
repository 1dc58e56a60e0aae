//! Object hashes: 32-byte BLAKE3 digests, printed as 64 lowercase hex characters, and the
//! hex prefixes (at least `HASH_PREFIX_HEX_MIN` characters) that users type instead.

use std::fmt;

use crate::limits::HASH_PREFIX_HEX_MIN;

/// The BLAKE3 hash of an object's canonical encoding: a commit, an index node or a content
/// value. Hashes order by their bytes, which is also the order of their hex form.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hash([u8; 32]);

impl std::hash::Hash for Hash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // A BLAKE3 digest is already uniformly random: its first eight bytes are a hash.
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

/// A hasher for maps keyed by `Hash`: it passes the digest's first eight bytes through
/// instead of hashing them again with SipHash.
#[derive(Debug, Default, Clone, Copy)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached by keys other than `Hash`; fold them in so the map stays correct.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 ^= v;
    }
}

/// A `HashMap` keyed by object hashes.
pub type HashMapByDigest<V> =
    std::collections::HashMap<Hash, V, std::hash::BuildHasherDefault<DigestHasher>>;

impl Hash {
    pub const fn from_bytes(bytes: [u8; 32]) -> Hash {
        Hash(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Hashes bytes that are already a canonical encoding.
    pub fn of(encoding: &[u8]) -> Hash {
        Hash(*blake3::hash(encoding).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses exactly 64 hex characters (either case).
    pub fn parse(text: &str) -> Result<Hash, HashParseError> {
        if text.len() != 64 {
            return Err(HashParseError::Length(text.len()));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| HashParseError::NotHex)?;
        Ok(Hash(bytes))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Twelve characters identify an object in test output; the full hash is noise.
        write!(f, "#{}", &self.to_hex()[..12])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashParseError {
    #[error("a hash is 64 hex characters, got {0}")]
    Length(usize),
    #[error("a hash holds only the hex characters 0-9 and a-f")]
    NotHex,
    #[error("a hash prefix needs at least {min} hex characters, got {0}", min = HASH_PREFIX_HEX_MIN)]
    PrefixTooShort(usize),
}

/// A hex prefix of a hash, `HASH_PREFIX_HEX_MIN..=64` characters, stored lowercase.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HashPrefix(String);

impl HashPrefix {
    pub fn parse(text: &str) -> Result<HashPrefix, HashParseError> {
        if text.len() < HASH_PREFIX_HEX_MIN {
            return Err(HashParseError::PrefixTooShort(text.len()));
        }
        if text.len() > 64 {
            return Err(HashParseError::Length(text.len()));
        }
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(HashParseError::NotHex);
        }
        Ok(HashPrefix(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The full hash, when the prefix is all 64 characters.
    pub fn full(&self) -> Option<Hash> {
        Hash::parse(&self.0).ok()
    }

    /// The smallest hash that starts with this prefix: the start of a range scan.
    pub fn lower_bound(&self) -> Hash {
        let mut padded = self.0.clone();
        padded.extend(std::iter::repeat_n('0', 64 - padded.len()));
        Hash::parse(&padded).expect("a validated prefix padded with zeros is a hash")
    }

    pub fn matches(&self, hash: &Hash) -> bool {
        hash.to_hex().starts_with(&self.0)
    }
}

impl fmt::Display for HashPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for HashPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashPrefix({})", self.0)
    }
}

/// The BLAKE3 hash of the canonical encoding of a whole `Content`: two keys hold the same
/// value exactly when their content hashes are equal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub Hash);

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_prefixes() {
        let h = Hash::of(b"floe");
        assert_eq!(Hash::parse(&h.to_hex()).unwrap(), h);
        assert_eq!(Hash::parse(&h.to_hex().to_uppercase()).unwrap(), h);
        let p = HashPrefix::parse(&h.to_hex()[..8]).unwrap();
        assert!(p.matches(&h));
        assert!(p.lower_bound() <= h);
        assert_eq!(
            HashPrefix::parse("abc1234"),
            Err(HashParseError::PrefixTooShort(7))
        );
        assert_eq!(HashPrefix::parse("abcdefgh"), Err(HashParseError::NotHex));
        assert_eq!(Hash::parse("00"), Err(HashParseError::Length(2)));
    }
}
