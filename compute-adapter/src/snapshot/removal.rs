//! What an overwrite or a replace does to the parent's manifests: those that hold no
//! removed file are carried as they are, and the others are written again, so that every
//! file keeps its sequence numbers and a removed file is listed once more, as deleted.

use iceberg::io::FileIO;
use iceberg::spec::{
    ManifestContentType, ManifestFile, ManifestWriter, PartitionSpecRef, TableMetadata,
};

use super::summary::Tally;
use super::{Removed, SnapshotError};

/// The parent's manifests under an overwrite or a replace: those that hold no removed file
/// are kept as they are; the entries of the others are written again, per partition spec,
/// the removed files as deleted and the rest as existing.
pub(super) struct Rewrite<'a, W> {
    pub(super) file_io: &'a FileIO,
    pub(super) metadata: &'a TableMetadata,
    pub(super) which: &'a Removed,
    /// Makes the writer of manifest `m<n>` for a partition spec.
    pub(super) writer: &'a W,
}

impl<W> Rewrite<'_, W>
where
    W: Fn(usize, &PartitionSpecRef) -> Result<ManifestWriter, SnapshotError>,
{
    pub(super) async fn run(
        &self,
        parent: Vec<ManifestFile>,
    ) -> Result<(Vec<ManifestFile>, Tally), SnapshotError> {
        let mut kept = Vec::new();
        let mut removed = Tally::default();
        // One writer per partition spec, numbered in the order the specs are met (m0 is
        // the added files').
        let mut rewritten: Vec<(i32, ManifestWriter)> = Vec::new();
        for m in parent {
            if m.content != ManifestContentType::Data {
                // Delete files go with every data file, or stay for the files kept.
                if matches!(self.which, Removed::Files(_)) {
                    kept.push(m);
                }
                continue;
            }
            let manifest = m.load_manifest(self.file_io).await?;
            let gone = |path: &str| match self.which {
                Removed::All => true,
                Removed::Files(paths) => paths.contains(path),
            };
            let touched = manifest
                .entries()
                .iter()
                .any(|e| e.is_alive() && gone(e.file_path()));
            if !touched {
                // Under `All` such a manifest holds no live file: the snapshot drops it.
                if matches!(self.which, Removed::Files(_)) {
                    kept.push(m);
                }
                continue;
            }
            let at = match rewritten
                .iter()
                .position(|(id, _)| *id == m.partition_spec_id)
            {
                Some(at) => at,
                None => {
                    let spec_id = m.partition_spec_id;
                    let spec = self.metadata.partition_spec_by_id(spec_id).ok_or_else(|| {
                        SnapshotError::UnknownPartitionSpec {
                            path: manifest
                                .entries()
                                .iter()
                                .find(|e| e.is_alive())
                                .map_or_else(
                                    || m.manifest_path.clone(),
                                    |e| e.file_path().to_owned(),
                                ),
                            spec_id,
                        }
                    })?;
                    let w = (self.writer)(rewritten.len() + 1, spec)?;
                    rewritten.push((m.partition_spec_id, w));
                    rewritten.len() - 1
                }
            };
            let writer = &mut rewritten[at].1;
            for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
                let f = entry.data_file().clone();
                let sequence = entry.sequence_number().unwrap_or(0);
                if gone(f.file_path()) {
                    removed.count(&f);
                    writer.add_delete_file(f, sequence, entry.file_sequence_number)?;
                } else {
                    let added_by = entry.snapshot_id().unwrap_or(m.added_snapshot_id);
                    writer.add_existing_file(f, added_by, sequence, entry.file_sequence_number)?;
                }
            }
        }
        for (_, writer) in rewritten {
            kept.push(writer.write_manifest_file().await?);
        }
        Ok((kept, removed))
    }
}
