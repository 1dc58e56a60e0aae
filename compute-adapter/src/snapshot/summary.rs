//! A snapshot's summary: the data files it added and removed, and the table's totals after
//! it, under the property names Iceberg's writers use, so that every engine reads them.

use std::collections::{BTreeSet, HashMap};

use iceberg::spec::{DataFile, Operation, Summary};

/// Counts of data files, as the summary reports them.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) files: u64,
    pub(super) records: u64,
    pub(super) bytes: u64,
    /// The files' paths (an overwrite checks that every file it names was removed).
    pub(super) paths: BTreeSet<String>,
}

impl Tally {
    pub(super) fn of(files: &[DataFile]) -> Tally {
        let mut tally = Tally::default();
        for f in files {
            tally.count(f);
        }
        tally
    }

    pub(super) fn count(&mut self, f: &DataFile) {
        self.files += 1;
        self.records += f.record_count();
        self.bytes += f.file_size_in_bytes();
        self.paths.insert(f.file_path().to_owned());
    }
}

/// The summary of a snapshot: what it added and removed, and the table's totals after it.
/// A total is known when every file was removed (only the new files are left), on a first
/// snapshot, or when the parent's summary has it; otherwise it is left out, as Iceberg's
/// writers do.
pub(super) fn summary(
    operation: Operation,
    parent: Option<&Summary>,
    removed_all: bool,
    added: &Tally,
    removed: &Tally,
    own: HashMap<String, String>,
) -> Summary {
    let total = |key: &str, added: u64, removed: u64| -> Option<String> {
        match parent {
            _ if removed_all => Some(added),
            None => Some(added),
            Some(p) => p
                .additional_properties
                .get(key)
                .and_then(|v| v.parse::<u64>().ok())
                .and_then(|before| (before + added).checked_sub(removed)),
        }
        .map(|n| n.to_string())
    };
    let mut props = own;
    props.extend([
        ("added-data-files".to_owned(), added.files.to_string()),
        ("added-records".to_owned(), added.records.to_string()),
        ("added-files-size".to_owned(), added.bytes.to_string()),
    ]);
    for (key, added, removed) in [
        ("total-data-files", added.files, removed.files),
        ("total-records", added.records, removed.records),
        ("total-files-size", added.bytes, removed.bytes),
        ("total-delete-files", 0, 0),
        ("total-position-deletes", 0, 0),
        ("total-equality-deletes", 0, 0),
    ] {
        if let Some(v) = total(key, added, removed) {
            props.insert(key.to_owned(), v);
        }
    }
    if removed.files > 0 {
        props.extend([
            ("deleted-data-files".to_owned(), removed.files.to_string()),
            ("deleted-records".to_owned(), removed.records.to_string()),
            ("removed-files-size".to_owned(), removed.bytes.to_string()),
        ]);
    }
    Summary {
        operation,
        additional_properties: props,
    }
}
