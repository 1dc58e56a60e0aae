//! What `floe store copy` writes that no other caller may: history as another backend
//! holds it.

use super::{OBJECTS_PER_BATCH, PostgresBackend, pool_err, read_err, run, write_err};
use crate::backend::{BackendResult, RefRecord, ReflogEntry};
use crate::name::RefName;
use crate::records::{encode_entry, encode_record};

impl PostgresBackend {
    /// For `floe store copy`: writes refs and reflog entries exactly as another backend
    /// holds them (their sequence numbers kept), in one transaction; entries already here
    /// are left alone and refs are overwritten, so a copy interrupted anywhere runs again.
    /// The reflog counter continues after the greatest entry.
    pub fn import_history(
        &self,
        refs: &[(RefName, RefRecord)],
        reflog: &[ReflogEntry],
    ) -> BackendResult<()> {
        let refs: Vec<(String, Vec<u8>, Vec<u8>)> = refs
            .iter()
            .map(|(n, r)| {
                (
                    n.as_str().to_owned(),
                    r.head.as_bytes().to_vec(),
                    encode_record(r),
                )
            })
            .collect();
        let entries: Vec<(i64, String, Vec<u8>)> = reflog
            .iter()
            .map(|e| {
                let seq = i64::try_from(e.seq).unwrap_or(i64::MAX);
                let entry = encode_entry(&ReflogEntry {
                    seq: 0,
                    ..e.clone()
                });
                (seq, e.ref_name.as_str().to_owned(), entry)
            })
            .collect();
        let pool = self.pool.clone();
        run(async move {
            let mut client = pool.get().await.map_err(pool_err)?;
            let tx = client.transaction().await.map_err(read_err)?;
            for chunk in entries.chunks(OBJECTS_PER_BATCH) {
                let seqs: Vec<i64> = chunk.iter().map(|e| e.0).collect();
                let names: Vec<&str> = chunk.iter().map(|e| e.1.as_str()).collect();
                let bodies: Vec<&[u8]> = chunk.iter().map(|e| e.2.as_slice()).collect();
                tx.execute(
                    "INSERT INTO floe_reflog (seq, ref_name, entry) \
                     SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[]) \
                     ON CONFLICT (seq) DO NOTHING",
                    &[&seqs, &names, &bodies],
                )
                .await
                .map_err(read_err)?;
            }
            for (name, head, record) in &refs {
                tx.execute(
                    "INSERT INTO floe_refs (name, head, record) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET head = EXCLUDED.head, record = EXCLUDED.record",
                    &[name, head, record],
                )
                .await
                .map_err(read_err)?;
            }
            tx.execute(
                "UPDATE floe_counters SET v = greatest(v, (SELECT coalesce(max(seq), 0) FROM floe_reflog)) \
                 WHERE name = 'reflog'",
                &[],
            )
            .await
            .map_err(read_err)?;
            tx.commit().await.map_err(write_err)
        })
    }
}
