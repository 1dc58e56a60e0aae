//! Every bound of the catalog, as named constants (DESIGN §2 "Limits"), as
//! `floe_commits::limits` holds the version store's.
//!
//! A bound is a promise about time or space: a listing answers after examining a bounded
//! number of entries, a retry gives up, a cache stops growing, a record fits one meta value.
//! Each one is here with the reason for its value, so that none hides in the code that
//! applies it; a refusal names the limit.

/// Attempts one load-modify-commit makes (`retry_on_conflict`) before a concurrent writer
/// that keeps changing what it read makes it give up with `Contention` (which the client
/// may retry): each attempt waits for the head it lost to, so 16 is plenty short of a
/// livelock.
pub const CONFLICT_RETRIES_MAX: usize = 16;

/// Entries a namespace listing examines per call (tables and views between namespaces are
/// skipped), so that one call answers in bounded time; `next` continues past it.
pub const NAMESPACE_SCAN_MAX: usize = 10_000;

/// Entries a table or view listing examines per call, for the same reason.
pub const TABLE_SCAN_MAX: usize = 10_000;

/// Entries read from the store per page while a listing scans, and the most namespaces
/// one listing page answers: a page the HTTP layer serialises in one piece.
pub const LISTING_PAGE_MAX: usize = 1_000;

/// Entries read per page of a meta-keyspace scan (run records, a run's answer chunks,
/// idempotency records): each entry is at most a meta value, so a page stays a few MiB.
pub const META_PAGE_MAX: usize = 1_000;

/// How long an idempotency record answers retries: 30 minutes, which the server
/// advertises (`IDEMPOTENCY_LIFETIME`); a client retrying later gets a fresh evaluation.
pub const IDEMPOTENCY_LIFETIME_MS: i64 = 30 * 60 * 1000;

/// How long a request holds its idempotency key when servers share the catalog: a retry
/// on another server waits (409/503 with Retry-After) this long at most after the
/// holder died. A request running longer may be taken over by a retry; its own move is
/// then fenced off (nothing written twice), so the lease bounds waiting, not safety.
pub const IDEMPOTENCY_CLAIM_LEASE_MS: i64 = 2 * 60 * 1000;

/// `IDEMPOTENCY_LIFETIME_MS` as an ISO 8601 duration, for the Iceberg config reply (a
/// test keeps the two equal).
pub const IDEMPOTENCY_LIFETIME: &str = "PT30M";

/// One chunk of a stored run answer: below `floe_commits::limits::VALUE_BYTES_MAX` (64 KiB),
/// with room for the chunk's key.
pub const RUN_ANSWER_CHUNK_BYTES: usize = 60 * 1024;

/// The largest answer a run may keep: a 10,000-file import answers about 3 MiB, and a
/// retry reads the whole answer back into memory.
pub const RUN_ANSWER_BYTES_MAX: usize = 16 << 20;

/// The longest error a run record keeps, in bytes (the rest is cut, and says so): the
/// record must fit one meta value.
pub const RUN_ERROR_BYTES_MAX: usize = 8 * 1024;

/// The longest `source` (what the run does, for people) a run record keeps, in bytes,
/// for the same reason.
pub const RUN_SOURCE_BYTES_MAX: usize = 1024;
/// Run records one page of `list_runs` examines at most (a filter may keep few of them).
pub const RUN_LIST_SCAN_MAX: usize = 10_000;

/// Reflog entries of a target searched for a run's landing (recovery, retention): the
/// search also stops at entries older than the run, so this bounds only a target that
/// moved very often while the run ran.
pub const LANDING_REFLOG_SCAN_MAX: usize = 100_000;

/// How far before a run's start its landing's reflog entry may be dated: server clocks
/// step, and a landing missed here would fail a run that landed.
pub const LANDING_CLOCK_SLACK_MS: i64 = 10 * 60 * 1000;

/// Entries of each kind (run records, idempotency records) one maintenance pass examines;
/// the next pass resumes where it stopped.
pub const MAINTENANCE_SCAN_MAX: usize = 100_000;

/// Deletions of each kind one maintenance pass makes: a pass holds the maintenance lock,
/// and the server runs another pass at once when this stopped it.
pub const MAINTENANCE_DELETES_MAX: usize = 1_000;

/// One day, the unit the default retentions are counted in.
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// How long a failed or cancelled run's branch stays (sealed) by default: a week to look
/// at what went wrong (`floe serve --run-retention`).
pub const RUN_BRANCHES_RETENTION_MS_DEFAULT: i64 = 7 * DAY_MS;

/// How long a finished run's record and answer stay by default: a month of answers to
/// retried requests and of run history (`floe serve --run-record-retention`).
pub const RUN_RECORDS_RETENTION_MS_DEFAULT: i64 = 30 * DAY_MS;

/// Manifests one commit's new snapshots (or one registration's snapshots) may add: each
/// is read once, on the request's thread, to check its files lie inside the table.
pub const NEW_MANIFESTS_MAX: usize = 10_000;

/// The largest manifest or manifest list the commit check (and the Iceberg-aware merge)
/// reads: each is read whole into memory (a manifest is 8 MB at Java's default target).
pub const MANIFEST_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Manifest paths the verified-list cache holds at most (a list counts one, plus one per
/// manifest): at about 150 bytes a path, some 150 MiB at the most, and enough for the
/// current list of every table being written.
pub const VERIFIED_MANIFESTS_MAX: usize = 1_000_000;

/// Metadata files the metadata cache remembers at most.
pub const METADATA_CACHE_ENTRIES_MAX: usize = 4_096;

/// Bytes of metadata the metadata cache remembers at most (a file larger than a quarter
/// of this is never cached): a bounded share of the server's memory.
pub const METADATA_CACHE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Characters of a request's text (a location, an id, a key) quoted back in an error:
/// enough to recognise it, never a whole oversized input.
pub const QUOTED_CHARS_MAX: usize = 200;

/// The size of each part of a multipart upload of a data file to S3 (and the most a
/// data file of S3 buffers before its first request): 8 MiB, boto3's default part size,
/// above S3's 5 MiB minimum for every part but the last. A smaller file is one PUT.
pub const S3_PART_BYTES: usize = 8 << 20;

/// Parts of one data file uploading at once: a writer blocks when this many are in
/// flight, so one file holds at most this many parts (64 MiB) in memory.
pub const S3_PARTS_IN_FLIGHT: usize = 8;

/// Parts of data files uploading at once in the whole process (every file, import and
/// run together): 32 parts, 256 MiB, so that a partitioned import writing many files, or
/// many writers at once, cannot hold more than that in flight.
pub const S3_PARTS_IN_FLIGHT_TOTAL: usize = 32;

/// The last bytes of a new local data file read back when it is finished (its Parquet
/// footer is there; a larger footer is read from the file).
pub const DATA_FILE_TAIL_BYTES: u64 = 1 << 20;

/// How long credentials vended by STS last (`DurationSeconds`): an hour, STS's default and
/// the most a role chained from another allows.
pub const STS_DURATION_S: i64 = 3600;

/// Vended credentials are asked for again this long before they expire, so an engine
/// never receives credentials about to lapse mid-read.
pub const STS_REFRESH_BEFORE_S: i64 = 300;

/// Vended credentials cached at most, by (table location, access, principal): expired
/// ones are dropped first when the cache is full, then all.
pub const STS_CACHE_ENTRIES_MAX: usize = 10_000;

/// Tokens one principal name may hold: a listing of them stays one page, and a runaway
/// script cannot fill the meta keyspace.
pub const TOKENS_MAX: usize = 10_000;

/// The longest principal name, token name or role name, in bytes: they are keys and
/// appear in every log line of a request.
pub const NAME_BYTES_MAX: usize = 256;

/// Snapshots a side of an Iceberg-aware merge may have made since the merge base: beyond
/// it the table conflicts (`history-unknown`) rather than reading an unbounded history.
pub const TABLE_MERGE_SNAPSHOTS_MAX: usize = 10_000;

/// Shared code snapshot manifests one sweep looks at (`Catalog::sweep_shared_code`): a
/// pass stays bounded; those past it are seen by the next.
pub const SHARED_CODE_SWEEP_MAX: usize = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_idempotency_lifetime_is_the_one_applied() {
        let minutes: i64 = IDEMPOTENCY_LIFETIME
            .strip_prefix("PT")
            .and_then(|m| m.strip_suffix('M'))
            .and_then(|m| m.parse().ok())
            .expect("PT<n>M");
        assert_eq!(minutes * 60 * 1000, IDEMPOTENCY_LIFETIME_MS);
    }
}
