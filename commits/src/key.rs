//! `ContentKey`: the path of a namespace, table or view — namespace levels, then the name.
//!
//! A key is validated once, here, and stored as its elements joined by a 0x00 byte. Since
//! elements never hold control characters, 0x00 sorts below every element byte, so the
//! byte order of the joined form is exactly the element-by-element order, and every key
//! under a prefix lies in one contiguous byte range. The index stores these bytes as is.

use std::fmt;

use bytes::Bytes;

use crate::limits::{KEY_BYTES_MAX, KEY_ELEMENT_BYTES_MAX, KEY_ELEMENTS_MAX};

const SEPARATOR: u8 = 0;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentKey(Bytes);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a key needs at least one element")]
    Empty,
    #[error("key element {0} is empty")]
    EmptyElement(usize),
    #[error("key element {0} holds a control character (U+0000-U+001F or U+007F)")]
    ControlCharacter(usize),
    #[error("a key has at most {max} elements, got {0}", max = KEY_ELEMENTS_MAX)]
    TooManyElements(usize),
    #[error("a key is at most {max} bytes (KEY_BYTES_MAX, elements plus one separator between each), got {0}", max = KEY_BYTES_MAX)]
    TooLong(usize),
    #[error(
        "key element {index} is {bytes} bytes as a folder name; a namespace, table or view name is at most {max} (KEY_ELEMENT_BYTES_MAX; letters, digits, `_`, `-` and `.` count one byte, any other byte three)",
        max = KEY_ELEMENT_BYTES_MAX
    )]
    ElementTooLong { index: usize, bytes: usize },
    #[error("key element {0} is `.` or `..`, which reads as a path step; name it otherwise")]
    PathStep(usize),
}

/// One key element as one path segment (a folder name in the warehouse): ASCII letters,
/// digits, `_` and `-` stay, and `.` unless the element starts with one; every other byte
/// becomes `%XX`. So no segment is `.` or `..`, nor decodes to one, holds a separator, or
/// needs quoting in a URL.
pub fn escape_element(element: &str) -> String {
    let mut out = String::with_capacity(escaped_len(element));
    let dotted = element.starts_with('.');
    for b in element.bytes() {
        if keeps(dotted, b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The length of `escape_element(element)`.
pub fn escaped_len(element: &str) -> usize {
    let dotted = element.starts_with('.');
    element
        .bytes()
        .map(|b| if keeps(dotted, b) { 1 } else { 3 })
        .sum()
}

fn keeps(dotted: bool, b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && !dotted)
}

impl ContentKey {
    /// Validates the elements and builds the key. Each element is at most
    /// `KEY_ELEMENT_BYTES_MAX` bytes escaped (it names a folder).
    pub fn new<I, S>(elements: I) -> Result<ContentKey, KeyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        ContentKey::build(elements, true)
    }

    fn build<I, S>(elements: I, bound_elements: bool) -> Result<ContentKey, KeyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut buf = Vec::new();
        let mut count = 0usize;
        for (i, element) in elements.into_iter().enumerate() {
            let element = element.as_ref();
            if element.is_empty() {
                return Err(KeyError::EmptyElement(i));
            }
            if element.chars().any(|c| c < ' ' || c == '\u{7f}') {
                return Err(KeyError::ControlCharacter(i));
            }
            if bound_elements {
                if element == "." || element == ".." {
                    return Err(KeyError::PathStep(i));
                }
                let bytes = escaped_len(element);
                if bytes > KEY_ELEMENT_BYTES_MAX {
                    return Err(KeyError::ElementTooLong { index: i, bytes });
                }
            }
            if i > 0 {
                buf.push(SEPARATOR);
            }
            buf.extend_from_slice(element.as_bytes());
            count += 1;
            if count > KEY_ELEMENTS_MAX {
                return Err(KeyError::TooManyElements(count));
            }
            if buf.len() > KEY_BYTES_MAX {
                return Err(KeyError::TooLong(buf.len()));
            }
        }
        if count == 0 {
            return Err(KeyError::Empty);
        }
        Ok(ContentKey(Bytes::from(buf)))
    }

    /// Rebuilds a key from the bytes the index stores. Stored bytes were validated when
    /// written; they are checked again because a damaged store must not yield bad keys.
    /// (Not against `KEY_ELEMENT_BYTES_MAX`: keys stored before that bound stay readable.)
    pub fn from_stored(bytes: Bytes) -> Result<ContentKey, KeyError> {
        let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::ControlCharacter(0))?;
        let key = ContentKey::build(text.split('\0'), false)?;
        debug_assert_eq!(key.0, bytes);
        Ok(key)
    }

    /// The stored form: elements joined by 0x00.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn elements(&self) -> impl Iterator<Item = &str> + '_ {
        // The bytes are valid UTF-8 by construction.
        std::str::from_utf8(&self.0).unwrap_or_default().split('\0')
    }

    pub fn element_count(&self) -> usize {
        self.0.iter().filter(|b| **b == SEPARATOR).count() + 1
    }

    /// The last element: a table's or namespace's own name.
    pub fn name(&self) -> &str {
        self.elements().last().unwrap_or_default()
    }

    /// The key of the enclosing namespace, `None` for a top-level key.
    pub fn parent(&self) -> Option<ContentKey> {
        let cut = self.0.iter().rposition(|b| *b == SEPARATOR)?;
        Some(ContentKey(self.0.slice(..cut)))
    }

    /// The key with one more element.
    pub fn child(&self, element: &str) -> Result<ContentKey, KeyError> {
        ContentKey::new(self.elements().chain(std::iter::once(element)))
    }

    /// True when `self` is `prefix` or lies under it.
    pub fn starts_with(&self, prefix: &ContentKey) -> bool {
        self.0.starts_with(&prefix.0)
            && (self.0.len() == prefix.0.len() || self.0[prefix.0.len()] == SEPARATOR)
    }

    /// The byte range that holds `self` and every key under it: `[self, self + 0x01)`.
    pub fn subtree_range(&self) -> (Bytes, Bytes) {
        let mut end = self.0.to_vec();
        end.push(SEPARATOR + 1);
        (self.0.clone(), Bytes::from(end))
    }

    /// The byte range of the keys strictly under `self`: `[self + 0x00, self + 0x01)`.
    pub fn children_range(&self) -> (Bytes, Bytes) {
        let mut start = self.0.to_vec();
        start.push(SEPARATOR);
        let mut end = self.0.to_vec();
        end.push(SEPARATOR + 1);
        (Bytes::from(start), Bytes::from(end))
    }
}

impl fmt::Display for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, element) in self.elements().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(element)?;
        }
        Ok(())
    }
}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.elements()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(elements: &[&str]) -> ContentKey {
        ContentKey::new(elements).unwrap()
    }

    #[test]
    fn byte_order_is_element_order() {
        let mut keys = [
            k(&["a b"]),
            k(&["a", "b"]),
            k(&["a"]),
            k(&["ab"]),
            k(&["a", "b", "c"]),
            k(&["a!"]),
        ];
        keys.sort();
        let shown: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
        assert_eq!(
            shown,
            [
                r#"["a"]"#,
                r#"["a", "b"]"#,
                r#"["a", "b", "c"]"#,
                r#"["a b"]"#,
                r#"["a!"]"#,
                r#"["ab"]"#
            ]
        );
        assert!(k(&["a", "b"]).starts_with(&k(&["a"])));
        assert!(!k(&["ab"]).starts_with(&k(&["a"])));
        assert_eq!(k(&["a", "b", "c"]).parent(), Some(k(&["a", "b"])));
        assert_eq!(k(&["a"]).parent(), None);
        let (lo, hi) = k(&["a"]).children_range();
        assert!(k(&["a", "z"]).as_bytes() >= &lo && k(&["a", "z"]).as_bytes() < &hi);
        assert!(k(&["ab"]).as_bytes() >= &hi);
    }

    #[test]
    fn an_element_is_bounded_by_its_escaped_bytes() {
        let at_limit = "n".repeat(KEY_ELEMENT_BYTES_MAX);
        assert!(ContentKey::new([at_limit.as_str()]).is_ok());
        let over = "n".repeat(KEY_ELEMENT_BYTES_MAX + 1);
        assert_eq!(
            ContentKey::new(["db", over.as_str()]),
            Err(KeyError::ElementTooLong {
                index: 1,
                bytes: KEY_ELEMENT_BYTES_MAX + 1
            })
        );
        // Punctuation counts three bytes: 66 of them and 2 letters are at the limit.
        let punct = format!("{}ab", "!".repeat(66));
        assert_eq!(escaped_len(&punct), KEY_ELEMENT_BYTES_MAX);
        assert_eq!(escape_element(&punct).len(), KEY_ELEMENT_BYTES_MAX);
        assert!(ContentKey::new([punct.as_str()]).is_ok());
        assert!(ContentKey::new([format!("{punct}!")]).is_err());
        // Dots stay, unless the element starts with one: then none can form `..` again.
        assert_eq!(escape_element("a.b.c"), "a.b.c");
        assert_eq!(escape_element(".a.b"), "%2Ea%2Eb");
        assert_eq!(escape_element("..."), "%2E%2E%2E");
        assert_eq!(ContentKey::new(["db", ".."]), Err(KeyError::PathStep(1)));
        assert_eq!(ContentKey::new(["."]), Err(KeyError::PathStep(0)));
        // Keys stored before the bound was enforced stay readable.
        let stored = ContentKey::build([over.as_str()], false).unwrap();
        assert_eq!(
            ContentKey::from_stored(stored.as_bytes().clone()),
            Ok(stored)
        );
    }

    #[test]
    fn bad_keys_are_refused_with_the_reason() {
        assert_eq!(ContentKey::new::<_, &str>([]), Err(KeyError::Empty));
        assert_eq!(ContentKey::new(["a", ""]), Err(KeyError::EmptyElement(1)));
        assert_eq!(
            ContentKey::new(["a\u{0}b"]),
            Err(KeyError::ControlCharacter(0))
        );
        assert_eq!(
            ContentKey::new(["a\nb"]),
            Err(KeyError::ControlCharacter(0))
        );
        // Five elements at their own bound, separators, and the rest in a sixth.
        let long = "x".repeat(KEY_ELEMENT_BYTES_MAX);
        let rest = |n: usize| "x".repeat(KEY_BYTES_MAX - 5 * (KEY_ELEMENT_BYTES_MAX + 1) + n);
        let at_limit = [&long, &long, &long, &long, &long, &rest(0)];
        assert!(ContentKey::new(at_limit).is_ok());
        let over = [&long, &long, &long, &long, &long, &rest(1)];
        assert_eq!(
            ContentKey::new(over),
            Err(KeyError::TooLong(KEY_BYTES_MAX + 1))
        );
        let many = vec!["a"; KEY_ELEMENTS_MAX + 1];
        assert_eq!(
            ContentKey::new(many),
            Err(KeyError::TooManyElements(KEY_ELEMENTS_MAX + 1))
        );
        let stored = k(&["ns", "t"]).as_bytes().clone();
        assert_eq!(ContentKey::from_stored(stored).unwrap(), k(&["ns", "t"]));
    }
}
