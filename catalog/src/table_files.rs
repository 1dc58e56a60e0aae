//! A table's own files (DESIGN §3 "The Warehouse", §9: confined to the table's location).
//!
//! Every read done for a table — scans, import checks, planning — goes through a `FileIO`
//! rooted at the table's location (`Catalog::table_file_io`), so a snapshot that names
//! another table's manifest list, manifests or data files cannot be read through it. A
//! commit whose new snapshots name files outside the table's location is refused before it
//! lands (`check_new_snapshots`): the manifest list, every manifest it lists that its
//! parent did not, and every data and delete file those manifests add. A registered table
//! keeps its own location as its root.
//!
//! The same rule for what a table's metadata names directly: path properties
//! (`write.data.path`, ...) and statistics files must lie under its location, and a new
//! table takes only a location with no table metadata in it yet.
//!
//! Also here: the name of a table's next metadata file, derived from the current one's
//! (`<n>-<uuid>.metadata.json`, or a registered table's Hadoop-style `v<n>.metadata.json`).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use iceberg::MetadataLocation;
use iceberg::io::FileIO;
use iceberg::spec::TableMetadata;
use parking_lot::Mutex;

use crate::Catalog;
use crate::avro_paths;
use crate::error::{CatalogError, CatalogResult};
use crate::limits::{
    MANIFEST_BYTES_MAX, NEW_MANIFESTS_MAX, QUOTED_CHARS_MAX, VERIFIED_MANIFESTS_MAX,
};

/// Table properties that name where writers put files.
const PATH_PROPERTIES: &[&str] = &[
    "write.data.path",
    "write.metadata.path",
    "write.object-storage.path",
    "write.folder-storage.path",
    "location",
];

/// True when `path` lies strictly inside the folder `location` (both URLs or paths), with
/// no segment that is, or percent-decodes to, `.` or `..` (a client that decodes URIs
/// would step out through it; floe's own names never make one).
pub(crate) fn inside(location: &str, path: &str) -> bool {
    let location = location.trim_end_matches('/');
    let step = |segment: &str| {
        let decoded = segment.replace("%2E", ".").replace("%2e", ".");
        decoded == "." || decoded == ".."
    };
    path.strip_prefix(location)
        .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
        && !path.split('/').any(step)
}

/// The refusal of a file (`what`: "manifest", "data file", ...) outside the table's
/// `location`.
fn outside(what: &str, path: &str, location: &str) -> CatalogError {
    CatalogError::Invalid(format!(
        "{what} {} is outside the table's location {location}; a table's files live under its own location",
        path.chars().take(QUOTED_CHARS_MAX).collect::<String>()
    ))
}

/// Manifest lists whose files a commit checked (a list names one content forever), with
/// the manifests they list: the parent list the next commit of the table inherits from.
/// Bounded by what it holds (a list counts one, plus one per manifest); when full it
/// forgets a quarter of its lists.
#[derive(Debug, Default)]
pub(crate) struct VerifiedLists {
    /// The lists by path, and how many manifest paths they hold in all.
    inner: Mutex<(HashMap<String, ListedManifests>, usize)>,
}

/// The manifests one checked list names.
type ListedManifests = Arc<HashSet<String>>;

impl VerifiedLists {
    fn get(&self, path: &str) -> Option<Arc<HashSet<String>>> {
        self.inner.lock().0.get(path).cloned()
    }

    fn insert(&self, path: String, manifests: HashSet<String>) {
        let size = 1 + manifests.len();
        if size > VERIFIED_MANIFESTS_MAX / 4 {
            return;
        }
        let mut inner = self.inner.lock();
        let (lists, held) = &mut *inner;
        if *held + size > VERIFIED_MANIFESTS_MAX {
            let forget: Vec<String> = lists.keys().take(lists.len() / 4 + 1).cloned().collect();
            for k in forget {
                if let Some(m) = lists.remove(&k) {
                    *held -= 1 + m.len();
                }
            }
        }
        *held += size;
        if let Some(old) = lists.insert(path, Arc::new(manifests)) {
            *held -= 1 + old.len();
        }
    }
}

impl Catalog {
    /// The `iceberg` crate's `FileIO` for one table: rooted at the table's own location, so
    /// every read through it (scans, manifests, planning) stays inside that table's folder.
    /// What engines need to reach the warehouse's files themselves (a table's `config` in
    /// Iceberg answers): the store's endpoint, region and addressing; no credentials.
    pub fn storage_properties(&self) -> std::collections::BTreeMap<String, String> {
        self.warehouse()
            .map(crate::Warehouse::engine_properties)
            .unwrap_or_default()
    }

    /// The credentials the warehouse vends to engines that ask, for `table` as `spec`
    /// names it, as Iceberg's table config names them (`s3.access-key-id`,
    /// `s3.secret-access-key`, `s3.session-token`); `None` when it vends none.
    ///
    /// - Static keys reach every table's files on every branch: only a principal who
    ///   manages the whole catalog gets them (others get `None`).
    /// - STS keys are scoped to the table's location, read-only unless `spec` is a branch
    ///   the principal may write the table on. The caller read the table at `spec`.
    pub fn vended_credentials(
        &self,
        principal: &crate::Principal,
        spec: &floe_commits::RefSpec,
        table: &crate::LoadedTable,
    ) -> CatalogResult<Option<std::collections::BTreeMap<String, String>>> {
        let Ok(warehouse) = self.warehouse() else {
            return Ok(None);
        };
        match warehouse.vending_mode() {
            None => Ok(None),
            Some(crate::warehouse::Vending::Static(_)) => Ok(self
                .authorize(principal, crate::Action::Manage, crate::Target::default())
                .ok()
                .and_then(|()| warehouse.vended_properties())),
            Some(crate::warehouse::Vending::Sts(sts)) => {
                let location = table.metadata.location().trim_end_matches('/');
                warehouse.confine(&format!("{location}/x"))?;
                if !scoped_by_its_uuid(location, &table.metadata.uuid()) {
                    return Ok(None);
                }
                let access = if self.may_write_table(principal, spec, &table.key) {
                    crate::sts::Access::Write
                } else {
                    crate::sts::Access::Read
                };
                Ok(Some(sts.credentials(
                    location,
                    access,
                    principal.name(),
                    self.now_ms(),
                )?))
            }
        }
    }

    /// Whether `principal` may write the table `key` on what `spec` names: a branch (not
    /// a tag, a hash or a time) it may commit to there.
    fn may_write_table(
        &self,
        principal: &crate::Principal,
        spec: &floe_commits::RefSpec,
        key: &floe_commits::ContentKey,
    ) -> bool {
        let Ok(name) = crate::refs::branch_of(spec) else {
            return false;
        };
        let branch = self
            .store
            .get_ref(name)
            .is_ok_and(|r| r.kind == floe_commits::RefKind::Branch);
        branch && self.authorize_content_write(principal, spec, key).is_ok()
    }

    /// A `FileIO` for the table's files (refused to an inline read: reading them is I/O).
    pub fn table_file_io(&self, metadata: &TableMetadata) -> CatalogResult<FileIO> {
        crate::inline::may_block()?;
        let props = self
            .warehouse()?
            .storage_props(metadata.location().trim_end_matches('/'))?;
        Ok(
            iceberg::io::FileIOBuilder::new(Arc::new(crate::storage::WarehouseStorageFactory))
                .with_props(props)
                .build(),
        )
    }

    /// Refuses new snapshots that name files outside the table's location: the snapshots
    /// of `after` that `before` lacks — those `added` names (a commit's add-snapshot
    /// updates), or with no `before`, every snapshot (a table created or registered).
    pub(crate) fn check_new_snapshots(
        &self,
        before: Option<&TableMetadata>,
        after: &TableMetadata,
        added: &[i64],
    ) -> CatalogResult<()> {
        // Looked up by id, never by walking every snapshot of a long-lived table.
        let new: Vec<_> = match before {
            Some(_) => added
                .iter()
                .filter_map(|id| after.snapshot_by_id(*id))
                .cloned()
                .collect(),
            None => after.snapshots().cloned().collect(),
        };
        if new.is_empty() {
            return Ok(());
        }
        let known = |id: i64| before.is_some_and(|b| b.snapshot_by_id(id).is_some());
        let location = after.location().trim_end_matches('/').to_owned();
        let warehouse = self.warehouse()?;
        let outside = |what: &str, path: &str| outside(what, path, &location);
        let read = |what: &str, path: &str| -> CatalogResult<Vec<u8>> {
            if !inside(&location, path) {
                return Err(outside(what, path));
            }
            warehouse
                .read_small(path, MANIFEST_BYTES_MAX)
                .map_err(|e| CatalogError::Invalid(format!("cannot read {what} {path}: {e}")))
        };
        // The paths a list names, read by the check's own bounded reader (`avro_paths`);
        // a file it cannot read is refused.
        // One budget of decoding work for all the files of this commit.
        let budget = std::cell::RefCell::new(avro_paths::Budget::per_commit());
        let read_list = |path: &str| -> CatalogResult<Vec<String>> {
            let bytes = read("manifest list", path)?;
            avro_paths::manifest_list_paths(&bytes, &mut budget.borrow_mut())
                .map_err(|e| CatalogError::Invalid(format!("manifest list {path}: {e}")))
        };
        let mut checked: HashSet<String> = HashSet::new();
        let mut verified: Vec<(String, HashSet<String>)> = Vec::new();
        for snapshot in new {
            let list = read_list(snapshot.manifest_list())?;
            // Manifests the parent snapshot listed were checked when they were added (and
            // its list, checked then, is usually still in the cache).
            let parent = snapshot
                .parent_snapshot_id()
                .filter(|p| known(*p))
                .and_then(|p| after.snapshot_by_id(p));
            let inherited: Arc<HashSet<String>> = match parent {
                Some(parent) => match self.verified_lists.get(parent.manifest_list()) {
                    Some(hit) => hit,
                    None => Arc::new(read_list(parent.manifest_list())?.into_iter().collect()),
                },
                None => Arc::default(),
            };
            for manifest_path in &list {
                if !inside(&location, manifest_path) {
                    return Err(outside("manifest", manifest_path));
                }
                if inherited.contains(manifest_path) || !checked.insert(manifest_path.clone()) {
                    continue;
                }
                if checked.len() > NEW_MANIFESTS_MAX {
                    return Err(CatalogError::Invalid(format!(
                        "a commit adds at most {NEW_MANIFESTS_MAX} manifests (NEW_MANIFESTS_MAX)"
                    )));
                }
                let bytes = read("manifest", manifest_path)?;
                let files = avro_paths::manifest_data_paths(&bytes, &mut budget.borrow_mut())
                    .map_err(|e| CatalogError::Invalid(format!("manifest {manifest_path}: {e}")))?;
                for file in &files {
                    if !inside(&location, file) {
                        return Err(outside("data file", file));
                    }
                }
            }
            verified.push((
                snapshot.manifest_list().to_owned(),
                list.into_iter().collect(),
            ));
        }
        // Only once the whole commit passed: its lists are what later commits inherit.
        for (path, manifests) in verified {
            self.verified_lists.insert(path, manifests);
        }
        Ok(())
    }
}

impl Catalog {
    /// Refuses a new table's location when table metadata is there already: another
    /// table's, or a dropped one's (its files stay). Data files and manifests a client
    /// wrote for this create before committing it (stage, write, commit) are expected; only
    /// floe writes metadata files. The locations this request's earlier attempts took are
    /// its own (`claimed`). A later request that retries a failed create finds the metadata
    /// its first attempt wrote, and is told to stage the table again.
    pub(crate) fn check_location_unused(
        &self,
        metadata: &TableMetadata,
        claimed: &mut HashSet<String>,
    ) -> CatalogResult<()> {
        let location = metadata.location().trim_end_matches('/').to_owned();
        if claimed.contains(&location) {
            return Ok(());
        }
        let used = self
            .warehouse()?
            .holds_metadata(&format!("{location}/metadata"))?;
        if used {
            return Err(CatalogError::Invalid(format!(
                "location {location} is in use: table metadata is there already (another table's, a dropped one's, or an earlier attempt's); stage-create the table again to get a new location"
            )));
        }
        claimed.insert(location);
        Ok(())
    }

    /// Refuses table properties that would send writers outside the table's location
    /// (`write.data.path`, `write.metadata.path`, ...): clients honour them, and another
    /// table's or another tenant's files must stay out of reach.
    pub(crate) fn check_paths(&self, metadata: &TableMetadata) -> CatalogResult<()> {
        let location = metadata.location().trim_end_matches('/');
        for key in PATH_PROPERTIES {
            let Some(value) = metadata.properties().get(*key) else {
                continue;
            };
            let value = value.trim_end_matches('/');
            let inside = (value == location || value.starts_with(&format!("{location}/")))
                && self.warehouse()?.confine(value).is_ok();
            if !inside {
                return Err(CatalogError::Invalid(format!(
                    "table property {key} must point inside the table's location {location}, not {:?}",
                    value.chars().take(QUOTED_CHARS_MAX).collect::<String>()
                )));
            }
        }
        // Statistics files (set-statistics, set-partition-statistics) are the table's
        // files too.
        let statistics = metadata
            .statistics_iter()
            .map(|s| s.statistics_path.as_str())
            .chain(
                metadata
                    .partition_statistics_iter()
                    .map(|s| s.statistics_path.as_str()),
            );
        for path in statistics {
            if !inside(location, path) {
                return Err(outside("statistics file", path, location));
            }
        }
        Ok(())
    }
}

/// The version in a metadata file's name: `<n>-<uuid>...` or Hadoop's `v<n>....`.
pub(crate) fn file_version(file: &str) -> Option<u64> {
    match file.strip_prefix('v') {
        Some(rest) => rest.split('.').next()?.parse().ok(),
        None => file.split('-').next()?.parse().ok(),
    }
}

/// Where a table's next metadata file goes: the next version after the current file's, in
/// floe's `<n>-<uuid>.metadata.json` form. A registered table whose file is named otherwise
/// (Hadoop's `v<n>.metadata.json`, or anything else under `<location>/metadata/`) continues
/// from its own sequence: `v<n>` gives n + 1, any other name the length of the metadata log
/// plus one.
pub(crate) fn next_metadata_location(
    current: &str,
    metadata: &TableMetadata,
    id: uuid::Uuid,
) -> CatalogResult<MetadataLocation> {
    let file = current.rsplit('/').next().unwrap_or_default();
    let version = match file_version(file) {
        Some(n) => i32::try_from(n.saturating_add(1)).unwrap_or(i32::MAX),
        None => i32::try_from(metadata.metadata_log().len()).unwrap_or(i32::MAX - 1) + 1,
    };
    metadata_location(metadata.location(), version, id, metadata)
}

/// A table's metadata file number `version`: `<location>/metadata/<version:05>-<id>.metadata.json`,
/// named by an id from the catalog's id source (the `iceberg` crate's own constructors
/// draw random ones), with the compression the metadata's properties ask for.
pub(crate) fn metadata_location(
    location: &str,
    version: i32,
    id: uuid::Uuid,
    metadata: &TableMetadata,
) -> CatalogResult<MetadataLocation> {
    let text = format!(
        "{}/metadata/{version:05}-{id}.metadata.json",
        location.trim_end_matches('/')
    );
    MetadataLocation::from_str(&text)
        .map(|l| l.with_new_metadata(metadata))
        .map_err(|e| CatalogError::Invalid(format!("the metadata location {text}: {e}")))
}

/// Whether a table's location is one floe made for it, `<...>/<name>-<its uuid>`, so that
/// credentials scoped to it reach no other table's files (a registered table's metadata
/// may name any folder: a namespace's, another table's); and whether it holds nothing an
/// IAM policy reads as a wildcard (`*`, `?`, `${`).
fn scoped_by_its_uuid(location: &str, uuid: &uuid::Uuid) -> bool {
    let last = location.rsplit('/').next().unwrap_or_default();
    let own = last.ends_with(&format!("-{}", uuid.hyphenated()))
        || last.ends_with(&format!("-{}", uuid.simple()));
    own && !location.contains(['*', '?', '$'])
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_location_made_for_the_table_is_scoped_for_vending() {
        let uuid = uuid::Uuid::parse_str("01a24a36-8cea-7652-ac58-00efd4e9a611").unwrap();
        let own = "s3://wh1/team/db/t-01a24a36-8cea-7652-ac58-00efd4e9a611";
        assert!(super::scoped_by_its_uuid(own, &uuid));
        for other in [
            "s3://wh1/team/db",
            "s3://wh1/team/db/u-01a24a36-8cea-7652-ac58-00efd4e9a612",
            "s3://wh1/team/db/*-01a24a36-8cea-7652-ac58-00efd4e9a611",
            "s3://wh1/team/${aws:username}/t-01a24a36-8cea-7652-ac58-00efd4e9a611",
        ] {
            assert!(!super::scoped_by_its_uuid(other, &uuid), "{other}");
        }
    }

    use super::*;

    #[test]
    fn inside_means_strictly_under_the_location() {
        let t = "file:///w/db/t-1";
        assert!(inside(t, "file:///w/db/t-1/data/a.parquet"));
        assert!(inside(
            "file:///w/db/t-1/",
            "file:///w/db/t-1/metadata/m.avro"
        ));
        assert!(!inside(t, "file:///w/db/t-1"));
        assert!(!inside(t, "file:///w/db/t-10/data/a.parquet"));
        assert!(!inside(t, "file:///w/db/t-1/../t-2/data/a.parquet"));
        assert!(!inside(t, "file:///w/db/t-2/data/a.parquet"));
        assert!(!inside(t, "file:///w/db/t-1/%2E%2E/t-2/data/a.parquet"));
        assert!(!inside(t, "file:///w/db/t-1/.%2e/t-2/data/a.parquet"));
        assert!(inside(t, "file:///w/db/t-1/data/%2Ehidden=1/a.parquet"));
    }
}
