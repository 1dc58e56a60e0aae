//! The commit object and its canonical encoding.
//!
//! A commit names its parents (none for the root, one, or two for a merge), the roots of
//! its two indexes (key -> content, and content id -> key), its author, committer and
//! message, the authored time (passed in: the core never reads a clock), free properties,
//! and its generation (1 + the largest parent generation), which bounds ancestry walks.

use std::collections::BTreeMap;

use smallvec::SmallVec;

use crate::encoding::{DecodeError, ObjectKind, Reader, Writer, map_payload_bytes};
use crate::hash::Hash;
use crate::limits::{AUTHOR_BYTES_MAX, COMMIT_PROPERTIES_BYTES_MAX, MESSAGE_BYTES_MAX};

pub type Parents = SmallVec<[Hash; 2]>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub parents: Parents,
    /// Root of the key index (content key -> content ref); `None` for an empty map.
    pub key_index: Option<Hash>,
    /// Root of the id index (content id -> content key); `None` for an empty map.
    pub id_index: Option<Hash>,
    pub author: String,
    pub committer: String,
    pub message: String,
    pub authored_at_ms: i64,
    pub properties: BTreeMap<String, String>,
    pub generation: u64,
}

/// What a caller says about a commit it asks for; the store adds parents, roots and the
/// generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitMeta {
    pub author: String,
    /// Defaults to the author when empty.
    pub committer: String,
    pub message: String,
    pub authored_at_ms: i64,
    pub properties: BTreeMap<String, String>,
}

impl CommitMeta {
    pub fn new(
        author: impl Into<String>,
        message: impl Into<String>,
        authored_at_ms: i64,
    ) -> CommitMeta {
        CommitMeta {
            author: author.into(),
            committer: String::new(),
            message: message.into(),
            authored_at_ms,
            properties: BTreeMap::new(),
        }
    }

    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> CommitMeta {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Checks the limits of DESIGN §2; the error names the limit.
    pub fn check(&self) -> Result<(), MetaError> {
        if self.message.len() > MESSAGE_BYTES_MAX {
            return Err(MetaError::MessageTooLong(self.message.len()));
        }
        let n = map_payload_bytes(&self.properties);
        if n > COMMIT_PROPERTIES_BYTES_MAX {
            return Err(MetaError::PropertiesTooLarge(n));
        }
        for who in [&self.author, &self.committer] {
            if who.len() > AUTHOR_BYTES_MAX {
                return Err(MetaError::AuthorTooLong(who.len()));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("a commit message is at most {max} bytes (MESSAGE_BYTES_MAX), got {0}", max = MESSAGE_BYTES_MAX)]
    MessageTooLong(usize),
    #[error(
        "commit properties are at most {max} bytes of keys and values (COMMIT_PROPERTIES_BYTES_MAX), got {0}",
        max = COMMIT_PROPERTIES_BYTES_MAX
    )]
    PropertiesTooLarge(usize),
    #[error("an author or committer is at most {max} bytes (AUTHOR_BYTES_MAX), got {0}", max = AUTHOR_BYTES_MAX)]
    AuthorTooLong(usize),
}

impl Commit {
    /// The commit every store starts from: no parents, empty indexes, fixed metadata, so
    /// every floe store shares one root hash.
    pub fn root() -> Commit {
        Commit {
            parents: Parents::new(),
            key_index: None,
            id_index: None,
            author: "floe".to_owned(),
            committer: "floe".to_owned(),
            message: "floe: the empty catalog".to_owned(),
            authored_at_ms: 0,
            properties: BTreeMap::new(),
            generation: 1,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(ObjectKind::Commit);
        w.varint(self.parents.len() as u64);
        for p in &self.parents {
            w.raw(p.as_bytes());
        }
        for root in [&self.key_index, &self.id_index] {
            match root {
                None => w.u8(0),
                Some(h) => {
                    w.u8(1);
                    w.raw(h.as_bytes());
                }
            }
        }
        w.str(&self.author);
        w.str(&self.committer);
        w.str(&self.message);
        w.i64(self.authored_at_ms);
        w.map(&self.properties);
        w.varint(self.generation);
        w.finish()
    }

    pub fn decode(bytes: &[u8]) -> Result<Commit, DecodeError> {
        let mut r = Reader::new(bytes, ObjectKind::Commit)?;
        let n = r.varint()?;
        if n > 2 {
            return Err(DecodeError("a commit has at most two parents"));
        }
        let mut parents = Parents::new();
        for _ in 0..n {
            parents.push(Hash::from_bytes(r.array()?));
        }
        let mut roots = [None, None];
        for root in &mut roots {
            *root = match r.u8()? {
                0 => None,
                1 => Some(Hash::from_bytes(r.array()?)),
                _ => return Err(DecodeError("bad index root flag")),
            };
        }
        let commit = Commit {
            parents,
            key_index: roots[0],
            id_index: roots[1],
            author: r.str()?.to_owned(),
            committer: r.str()?.to_owned(),
            message: r.str()?.to_owned(),
            authored_at_ms: r.i64()?,
            properties: r.map()?,
            generation: r.varint()?,
        };
        r.end()?;
        Ok(commit)
    }

    pub fn first_parent(&self) -> Option<Hash> {
        self.parents.first().copied()
    }
}
