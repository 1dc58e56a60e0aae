//! Every bound of the version store, as named constants (DESIGN §2 "Limits").
//!
//! The limits are part of the storage contract: they are enforced from the first backend
//! on so that the canonical encoding and the golden hashes never change when a durable
//! backend arrives. Each one is checked at the edge, and a refusal names the limit.

/// The largest stored object or value (a content object, a meta value, a ref record).
/// sled keeps items up to about a quarter of its 8 MiB segment inline, so 64 KiB values
/// are always written (and fsynced) with the segment, never as blob files.
pub const VALUE_BYTES_MAX: usize = 64 * 1024;

/// An index node is cut before its encoding could exceed this size.
pub const NODE_BYTES_MAX: usize = VALUE_BYTES_MAX;

/// A content key: its elements' UTF-8 bytes plus one separator byte between elements.
pub const KEY_BYTES_MAX: usize = 1024;

/// One key element (a namespace level, a table or view name), in bytes after escaping
/// for the warehouse (`key::escape_element`: ASCII letters, digits, `_`, `-` and a `.` that
/// does not lead stay; every other byte is `%XX`, three). Each element becomes a folder
/// name, a table's as `<name>-<uuid>`, and file systems allow 255 bytes per name: 200
/// leaves room for the 37 bytes of `-<uuid>`.
pub const KEY_ELEMENT_BYTES_MAX: usize = 200;

/// The number of elements of a content key (namespace levels plus the name).
pub const KEY_ELEMENTS_MAX: usize = 32;

/// A commit message, in UTF-8 bytes.
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024;

/// Commit properties: the sum of every key's and value's UTF-8 bytes.
pub const COMMIT_PROPERTIES_BYTES_MAX: usize = 16 * 1024;

/// Namespace properties: the sum of every key's and value's UTF-8 bytes.
pub const NAMESPACE_PROPERTIES_BYTES_MAX: usize = 32 * 1024;

/// An author or committer name, in UTF-8 bytes.
pub const AUTHOR_BYTES_MAX: usize = 1024;

/// Ref attributes and reflog properties: the sum of every key's and value's bytes.
pub const REF_ATTRIBUTES_BYTES_MAX: usize = 8 * 1024;

/// A principal name recorded in the reflog and in ref records.
pub const PRINCIPAL_BYTES_MAX: usize = 1024;

/// A ref name, in bytes (ASCII only).
pub const REF_NAME_BYTES_MAX: usize = 200;

/// The shortest hash prefix that resolves to an object.
pub const HASH_PREFIX_HEX_MIN: usize = 8;

/// At most this many candidates are listed by an ambiguous-prefix error.
pub const HASH_PREFIX_CANDIDATES_MAX: usize = 10;

/// Entries of one index node: a node is always cut here, whatever the keys.
pub const NODE_ENTRIES_MAX: usize = 512;

/// The average number of entries the chunking rule aims for.
pub const NODE_ENTRIES_TARGET: usize = 48;

/// Operations (puts, deletes and checks) in one commit.
pub const OPS_PER_COMMIT_MAX: usize = 10_000;

/// Key changes one merge, cherry-pick or revert may write. A larger change is refused
/// before anything is computed past the diff that counted it.
pub const CHANGES_PER_MERGE_MAX: usize = 1_000_000;

/// Commits visited by one merge-base or ancestry search.
pub const MERGE_BASE_VISITS_MAX: usize = 2_000_000;

/// Commits the in-memory commit graph keeps (hash -> parents, generation).
pub const COMMIT_GRAPH_ENTRIES_MAX: usize = 4_000_000;

/// Decoded index nodes kept in memory by a store.
pub const NODE_CACHE_ENTRIES_MAX: usize = 65_536;

/// Per-ref sequencers kept by a store (idle ones are dropped past this).
pub const SEQUENCERS_MAX: usize = 4_096;

/// Decoded commits kept in memory by a store.
pub const COMMIT_CACHE_ENTRIES_MAX: usize = 65_536;

/// Content values (a table's metadata location, ...) kept decoded: what a loadTable reads
/// after the key index, so that on a remote backend a load is one ref read. Values are
/// small (a location); the bound is on entries.
pub const CONTENT_CACHE_ENTRIES_MAX: usize = 16_384;

/// Commits one log call examines (matching or not) before it returns a page token.
pub const LOG_SCAN_MAX: usize = 10_000;

/// Entries in one page of a log.
pub const LOG_PAGE_MAX: usize = 1_000;

/// Entries in one page of a reflog.
pub const REFLOG_PAGE_MAX: usize = 1_000;

/// Reflog entries examined to resolve a `name*time` ref spec.
pub const REFLOG_SCAN_MAX: usize = 100_000;

/// Entries in one page of a key listing or of a diff.
pub const ENTRIES_PAGE_MAX: usize = 10_000;

/// Refs in one page of a ref listing.
pub const REFS_PAGE_MAX: usize = 1_000;

/// Keys in one multi-get.
pub const GET_KEYS_MAX: usize = 10_000;

/// `~N` in a ref spec.
pub const ANCESTOR_DEPTH_MAX: u64 = 1_000_000;

/// Times a commit re-evaluates at a new head after losing a compare-and-swap race.
pub const COMMIT_CAS_RETRIES_MAX: usize = 64;

/// A meta-keyspace key, in bytes.
pub const META_KEY_BYTES_MAX: usize = 1024;

/// Entries in one page of a meta-keyspace scan.
pub const META_SCAN_PAGE_MAX: usize = 10_000;
