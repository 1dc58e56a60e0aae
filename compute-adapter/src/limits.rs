//! Every bound of floe's compute, as named constants with their unit last and the reason
//! for each (DESIGN §2 "Limits", as `floe_commits::limits`).
//!
//! Queries and imports read what clients send and what tables hold; each of these bounds
//! keeps one request's memory, open files or output names within what a server shared by
//! many clients can give it. A refusal names the limit it met.

// Queries.

/// A query's wall time from the request to its last batch when the server sets none:
/// long enough for a large scan, short enough that a forgotten query ends.
pub const QUERY_TIMEOUT_DEFAULT_MS: u64 = 300_000;

/// A query's memory pool (sorts, joins, aggregates) when the server sets none; with no
/// spilling, this is all the memory one query may hold.
pub const QUERY_MEMORY_DEFAULT_BYTES: usize = 1 << 30;

/// Batches a query's stream may run ahead of its reader: enough to keep the engine busy
/// while the answer is sent, few enough that a slow reader holds little memory.
pub const QUERY_BATCHES_AHEAD: usize = 2;

/// Data files one scan partition reads at once: partitions already run on every core,
/// so more files in flight per partition would only add open files and buffers.
pub const SCAN_FILES_IN_FLIGHT_MAX: usize = 2;

/// Tables (with the manifests and manifest lists they parsed) a query engine keeps for
/// the next queries, by metadata location: a metadata file never changes, so a table
/// read again at the same commit plans from memory.
pub const QUERY_TABLES_KEPT_MAX: usize = 32;

/// How long a kept table is used: its storage access (credentials included) is built
/// again after this.
pub const QUERY_TABLE_KEPT_MS: u64 = 60_000;

/// The parsed manifests one kept table may hold.
pub const QUERY_TABLE_CACHE_BYTES: u64 = 16 << 20;

/// A Parquet data file larger than a partition's share of a scan is cut into byte ranges
/// (each row group read by the range holding its midpoint), but never into ranges smaller
/// than this: below it, the extra footer reads cost more than the second core saves.
pub const SCAN_SPLIT_BYTES_MIN: u64 = 8 << 20;

/// A Parquet answer flushes its row group once the group's buffered encoding reaches this
/// size, so a large answer never sits whole in memory.
pub const ANSWER_ROW_GROUP_BYTES: usize = 64 << 20;

// Imports.

/// Server-side sources one import may name: each is held open until the import ends.
pub const SERVER_SOURCES_MAX: usize = 256;

/// Rows CSV schema inference reads: enough to see most columns' types, few enough that an
/// import starts quickly. A later row that does not fit fails the import, saying so.
pub const CSV_INFER_ROWS: usize = 10_000;

/// Rows a conversion reads, casts and writes at a time (the Parquet reader's and the CSV
/// reader's batch size).
pub const IMPORT_BATCH_ROWS: usize = 65_536;

/// Batches (each split by partition) a conversion's reading thread may be ahead of its
/// writing thread: two keeps both cores busy and bounds the memory in between.
pub const CONVERT_BATCHES_AHEAD: usize = 2;

/// Files one conversion may write at once, one per partition value it meets: each is an
/// open file and a Parquet writer's buffers.
pub const PARTITION_FILES_MAX: usize = 1_000;

/// The characters of the file names an import's run record lists as its source: the
/// record is stored with the run and shown in listings.
pub const RUN_SOURCE_CHARS_MAX: usize = 500;

/// The characters of a source's name kept in its data file's name (after the UUID): file
/// systems allow 255 bytes per name.
pub const DATA_FILE_NAME_CHARS_MAX: usize = 64;

/// The characters of one partition folder's name (`region=eu`), within the 255 bytes file
/// systems allow per name.
pub const PARTITION_FOLDER_CHARS_MAX: usize = 100;

/// Partition folders nested under `data/`: one per partition field, and path lengths stay
/// within what file systems allow.
pub const PARTITION_FOLDERS_MAX: usize = 16;

/// Decimal digits of an Iceberg decimal (the format's own limit): a wider Arrow decimal
/// cannot be imported.
pub const DECIMAL_PRECISION_MAX: u8 = 38;

// Snapshots.

/// Snapshot ids tried for a new snapshot before giving up: each is 63 random bits, so a
/// second attempt is already all but never needed.
pub const SNAPSHOT_ID_ATTEMPTS_MAX: u64 = 16;

// Runs.

/// The bytes of a project archive a run uploads: code and configuration, not data.
pub const PROJECT_ARCHIVE_BYTES_MAX: usize = 32 << 20;

/// Entries (files and folders) in a project archive.
pub const PROJECT_ENTRIES_MAX: usize = 4_096;

/// The bytes of one entry's path in a project archive (file systems allow 4096 per path;
/// projects nest far less).
pub const PROJECT_PATH_BYTES_MAX: usize = 512;

/// Nodes one run plans: each is a line of the run's record, which stays small.
pub const RUN_NODES_MAX: usize = 128;

/// Parameters one project declares (and one run passes).
pub const RUN_PARAMETERS_MAX: usize = 128;

/// The bytes of a node's error kept in the run's record (its whole text is in the log).
pub const NODE_ERROR_BYTES_MAX: usize = 1_024;

/// Characters of a failed node's code its record keeps beside the error.
pub const NODE_EXCERPT_CHARS: usize = 300;

/// Rows of each model a run's answer previews (`--preview head|tail`).
pub const PREVIEW_ROWS: usize = 5;

/// Runs executing at once on one server when `--max-runs` sets none: each holds its
/// models' outputs in memory and uses the cores.
pub const RUNS_RUNNING_DEFAULT: usize = 2;

/// How long the Python planner may take over a project before the run fails to plan.
pub const PLANNER_TIMEOUT_MS: u64 = 30_000;

/// How often a waiter looks at the record of a run another server runs (a run of this
/// server wakes its waiters itself; this is also their fallback).
pub const RUN_POLL_MS: u64 = 250;

/// How old a run log or code snapshot no record names must be before a sweep removes it:
/// a run being submitted has its code written a moment before its record.
pub const RUN_FILES_GRACE_MS: u64 = 3_600_000;

/// Rows of a model's output below which it is written as one data file: a larger output is
/// cut into up to one piece per core, each encoded and compressed on its own thread.
pub const RUN_FILE_ROWS_MIN: usize = 1_000_000;

/// The bytes of a run record's pipeline part (its nodes' states): the record is one meta
/// value (64 KiB); past this a dry run's per-node schemas are left out.
pub const RUN_PIPELINE_BYTES_MAX: usize = 48 * 1024;

/// The free space `/dev/shm` must have for runs' scratch folders to live there (else
/// they are on the data folder's disk).
pub const SHM_FREE_MIN: u64 = 1 << 30;

/// How long a worker's pipes are read after it exits, at most: what it wrote just before
/// exiting reaches the log, and a grandchild holding the pipes open cannot stall the run.
pub const WORKER_DRAIN_AFTER_EXIT_MS: u64 = 2_000;

/// The most of one line of a worker's output that is read (the rest of a longer line is
/// dropped); the log cuts what it shows of a line shorter still, after masking secrets.
pub const WORKER_LINE_READ_BYTES_MAX: usize = 1 << 20;

/// A worker's output beyond this many bytes (per stream) is not logged: a chatty function
/// cannot fill the runs' folder.
pub const WORKER_OUTPUT_BYTES_MAX: usize = 16 << 20;

/// A log line shows at most this many bytes of its text.
pub const LOG_LINE_BYTES_MAX: usize = 64 * 1024;

/// An entry of the runs' results cache holds at most `1 / CACHE_ENTRY_SHARE_MAX` of the
/// cache's bound, so one large output cannot evict everything else.
pub const CACHE_ENTRY_SHARE_MAX: u64 = 8;

/// Processes the worker user may have at once (every worker's together): a fork bomb
/// stops there, far from the server.
pub const WORKER_PROCESSES_MAX: u64 = 4096;

/// The longest the confined import check of a new environment may take, in seconds.
pub const ENV_IMPORT_CHECK_S: u64 = 300;
