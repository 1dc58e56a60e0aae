//! The ref-name grammar and the ref-spec grammar (DESIGN §2 "Refs", "Ref specs").
//!
//! Names and specs are validated here into newtypes; the rest of the store never looks
//! at a raw string again. A name can never be mistaken for a hash prefix (8 to 64 hex
//! characters are refused), so a bare hex spec always means a commit.

use std::fmt;

use crate::hash::{HashParseError, HashPrefix};
use crate::limits::{ANCESTOR_DEPTH_MAX, HASH_PREFIX_HEX_MIN, REF_NAME_BYTES_MAX};

/// The prefix of the temporary branches of runs and imports; only the executor writes them.
pub const RUN_BRANCH_PREFIX: &str = "floe-run/";

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefNameError {
    #[error("a ref name cannot be empty")]
    Empty,
    #[error("a ref name is at most {max} bytes, got {0}", max = REF_NAME_BYTES_MAX)]
    TooLong(usize),
    #[error(
        "a ref name holds only ASCII letters, digits, '.', '_', '-' and '/'; {0:?} is not allowed"
    )]
    BadCharacter(char),
    #[error("a ref name cannot start with '-' or '/'")]
    BadStart,
    #[error("a ref name cannot end with '/' or hold an empty part ('//')")]
    EmptyPart,
    #[error("a ref name cannot contain '..'")]
    DotDot,
    #[error("a ref name cannot be 8 to 64 hex characters: it would read as a commit hash")]
    LooksLikeHash,
}

impl RefName {
    pub fn parse(text: &str) -> Result<RefName, RefNameError> {
        if text.is_empty() {
            return Err(RefNameError::Empty);
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
        {
            return Err(RefNameError::BadCharacter(c));
        }
        if text.len() > REF_NAME_BYTES_MAX {
            return Err(RefNameError::TooLong(text.len()));
        }
        if text.starts_with('-') || text.starts_with('/') {
            return Err(RefNameError::BadStart);
        }
        if text.ends_with('/') || text.contains("//") {
            return Err(RefNameError::EmptyPart);
        }
        if text.contains("..") {
            return Err(RefNameError::DotDot);
        }
        if (HASH_PREFIX_HEX_MIN..=64).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(RefNameError::LooksLikeHash);
        }
        Ok(RefName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Run and import branches (`floe-run/...`): no principal writes them.
    pub fn is_run_branch(&self) -> bool {
        self.0.starts_with(RUN_BRANCH_PREFIX)
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Branches move; tags never do (only delete and create change a tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefKind {
    Branch,
    Tag,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Branch => "branch",
            RefKind::Tag => "tag",
        }
    }
}

/// Where to read: a ref, a commit of a ref, a commit, an ancestor, or a ref as it was.
#[derive(Clone, PartialEq, Eq)]
pub enum RefSpec {
    /// `name`: a branch or a tag at its head. The only writable spec (for a branch).
    Name(RefName),
    /// `name@<hash>`: a commit that must be in the ref's history.
    NameAt(RefName, HashPrefix),
    /// `<hash>`: any commit, by a unique prefix of at least 8 hex characters.
    Hash(HashPrefix),
    /// `base~N`: the N-th first-parent ancestor of what `base` names.
    Ancestor(Box<RefSpec>, u64),
    /// `name*<RFC 3339>`: the head the ref's newest reflog entry at or before that server
    /// time recorded. Milliseconds since the Unix epoch.
    AtTime(RefName, i64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefSpecError {
    #[error("invalid ref name: {0}")]
    Name(#[from] RefNameError),
    #[error("invalid hash in ref spec: {0}")]
    Hash(#[from] HashParseError),
    #[error("'~' takes a whole number of generations up to {max}, got {0:?}", max = ANCESTOR_DEPTH_MAX)]
    Ancestor(String),
    #[error("'*' takes an RFC 3339 time such as 2026-01-31T12:00:00Z, got {0:?}")]
    Time(String),
    #[error("a ref spec is name, name@hash, hash, spec~N or name*time; {0:?} is none of them")]
    Shape(String),
}

impl RefSpec {
    pub fn parse(text: &str) -> Result<RefSpec, RefSpecError> {
        if text.len() > REF_NAME_BYTES_MAX + 1 + 64 + 64 {
            return Err(RefSpecError::Shape(truncate(text)));
        }
        if let Some((name, time)) = text.split_once('*') {
            let name = RefName::parse(name)?;
            let at =
                time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| RefSpecError::Time(time.to_owned()))?;
            let ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
                .map_err(|_| RefSpecError::Time(time.to_owned()))?;
            return Ok(RefSpec::AtTime(name, ms));
        }
        if let Some((base, n)) = text.rsplit_once('~') {
            let depth = if n.is_empty() {
                1
            } else {
                n.parse::<u64>()
                    .map_err(|_| RefSpecError::Ancestor(n.to_owned()))?
            };
            if depth > ANCESTOR_DEPTH_MAX {
                return Err(RefSpecError::Ancestor(n.to_owned()));
            }
            let base = RefSpec::parse_base(base)?;
            return Ok(RefSpec::Ancestor(Box::new(base), depth));
        }
        RefSpec::parse_base(text)
    }

    fn parse_base(text: &str) -> Result<RefSpec, RefSpecError> {
        if text.contains(['~', '*']) {
            return Err(RefSpecError::Shape(truncate(text)));
        }
        if let Some((name, hash)) = text.split_once('@') {
            return Ok(RefSpec::NameAt(
                RefName::parse(name)?,
                HashPrefix::parse(hash)?,
            ));
        }
        if (HASH_PREFIX_HEX_MIN..=64).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Ok(RefSpec::Hash(HashPrefix::parse(text)?));
        }
        Ok(RefSpec::Name(RefName::parse(text)?))
    }

    /// The ref a spec starts from, if any.
    pub fn ref_name(&self) -> Option<&RefName> {
        match self {
            RefSpec::Name(n) | RefSpec::NameAt(n, _) | RefSpec::AtTime(n, _) => Some(n),
            RefSpec::Hash(_) => None,
            RefSpec::Ancestor(base, _) => base.ref_name(),
        }
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

impl fmt::Display for RefSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefSpec::Name(n) => write!(f, "{n}"),
            RefSpec::NameAt(n, h) => write!(f, "{n}@{h}"),
            RefSpec::Hash(h) => write!(f, "{h}"),
            RefSpec::Ancestor(base, n) => write!(f, "{base}~{n}"),
            RefSpec::AtTime(n, ms) => {
                let t =
                    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*ms) * 1_000_000)
                        .ok()
                        .and_then(|t| {
                            t.format(&time::format_description::well_known::Rfc3339)
                                .ok()
                        })
                        .unwrap_or_else(|| ms.to_string());
                write!(f, "{n}*{t}")
            }
        }
    }
}

impl fmt::Debug for RefSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RefSpec({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_grammar() {
        for ok in [
            "main",
            "dev",
            "feature/x-1",
            "release_2.0",
            "a",
            "abc1234",
            "cafebabe-x",
            "x/y/z",
        ] {
            assert!(RefName::parse(ok).is_ok(), "{ok}");
        }
        let bad = [
            ("", RefNameError::Empty),
            ("-x", RefNameError::BadStart),
            ("/x", RefNameError::BadStart),
            ("x/", RefNameError::EmptyPart),
            ("a//b", RefNameError::EmptyPart),
            ("a..b", RefNameError::DotDot),
            ("deadbeef", RefNameError::LooksLikeHash),
            ("a b", RefNameError::BadCharacter(' ')),
            ("a@b", RefNameError::BadCharacter('@')),
            ("a~1", RefNameError::BadCharacter('~')),
            ("a^", RefNameError::BadCharacter('^')),
            ("a*b", RefNameError::BadCharacter('*')),
            ("a:b", RefNameError::BadCharacter(':')),
            ("a\\b", RefNameError::BadCharacter('\\')),
            ("é", RefNameError::BadCharacter('é')),
        ];
        for (text, err) in bad {
            assert_eq!(RefName::parse(text), Err(err), "{text:?}");
        }
        assert!(RefName::parse(&"a".repeat(200)).is_ok());
        assert_eq!(
            RefName::parse(&"a".repeat(201)),
            Err(RefNameError::TooLong(201))
        );
        assert!(RefName::parse("floe-run/123").unwrap().is_run_branch());
    }

    #[test]
    fn specs_parse_into_their_shapes() {
        let shown = |s: &str| format!("{:?}", RefSpec::parse(s));
        assert_eq!(shown("main"), "Ok(RefSpec(main))");
        assert_eq!(shown("main@DEADBEEF"), "Ok(RefSpec(main@deadbeef))");
        assert_eq!(shown("deadbeef01"), "Ok(RefSpec(deadbeef01))");
        assert_eq!(shown("main~3"), "Ok(RefSpec(main~3))");
        assert_eq!(shown("main~"), "Ok(RefSpec(main~1))");
        assert_eq!(shown("main@deadbeef~2"), "Ok(RefSpec(main@deadbeef~2))");
        assert_eq!(
            shown("main*2026-01-31T12:00:00Z"),
            "Ok(RefSpec(main*2026-01-31T12:00:00Z))"
        );
        assert!(matches!(
            RefSpec::parse("main~x"),
            Err(RefSpecError::Ancestor(_))
        ));
        assert!(matches!(
            RefSpec::parse("main*yesterday"),
            Err(RefSpecError::Time(_))
        ));
        assert!(matches!(
            RefSpec::parse("main@xyz"),
            Err(RefSpecError::Hash(_))
        ));
        assert!(matches!(
            RefSpec::parse("main@abc"),
            Err(RefSpecError::Hash(_))
        ));
        assert!(matches!(
            RefSpec::parse("a~1~2"),
            Err(RefSpecError::Shape(_))
        ));
        assert!(matches!(
            RefSpec::parse("bad name"),
            Err(RefSpecError::Name(_))
        ));
    }
}
