//! The statement of a ref move, in its four shapes (move, create, delete, stays absent),
//! with the objects it refers to, and the move that sends it (`PostgresBackend::cas`).

use std::sync::LazyLock;

use tokio_postgres::types::Type;

use super::{
    OBJECT_BYTES_WITH_MOVE_MAX, OBJECTS_WITH_MOVE_MAX, PostgresBackend, read_err, write_err,
};
use crate::backend::{Backend, BackendResult, CasOutcome, RefUpdate, RefView};
use crate::records::{encode_entry, encode_record};

/// The parameters of a ref move: name, expected head, new head, new record, reflog entry,
/// meta key and value, the claim's key and value, the fence's key and value (absent ones
/// NULL), and the hashes and bytes of the objects written with it (empty arrays for none).
const CAS_TYPES: [Type; 13] = [
    Type::TEXT,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA_ARRAY,
    Type::BYTEA_ARRAY,
];

/// The ref move, around its conditional write: `moved` returns the row it wrote, or none
/// when the ref's head is not the expected one; `{claimed}` in it stands for "the claim,
/// if any, holds, and so does the fence, if any", checked on their rows, locked first (the
/// claim's for update, as the move removes it; the fence's for share, so a removal of the
/// fence waits for the move and then finds its reflog entry). The objects are written
/// whether or not the ref moves (a statement's data-modifying `WITH` parts always run to
/// completion), in the same transaction: one flush of the log for both.
fn cas_statement(moved: &str) -> String {
    let moved = moved.replace(
        "{claimed}",
        "($8::bytea IS NULL OR EXISTS (SELECT 1 FROM claim)) \
         AND ($10::bytea IS NULL OR EXISTS (SELECT 1 FROM fence))",
    );
    format!(
        "WITH objects AS (INSERT INTO floe_objects (hash, bytes) \
                 SELECT * FROM unnest($12::bytea[], $13::bytea[]) ON CONFLICT (hash) DO NOTHING), \
         claim AS (SELECT 1 FROM floe_meta WHERE key = $8 AND value = $9 FOR UPDATE), \
         fence AS (SELECT 1 FROM floe_meta WHERE key = $10 AND value = $11 FOR SHARE), \
         moved AS ({moved}), \
         seq AS (UPDATE floe_counters SET v = v + 1 \
                 WHERE name = 'reflog' AND EXISTS (SELECT 1 FROM moved) RETURNING v), \
         logged AS (INSERT INTO floe_reflog (seq, ref_name, entry) SELECT v, $1, $5 FROM seq), \
         released AS (DELETE FROM floe_meta WHERE key = $8 AND EXISTS (SELECT 1 FROM seq)), \
         kept AS (INSERT INTO floe_meta (key, value) SELECT $6, $7 FROM seq WHERE $6 IS NOT NULL \
                  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value) \
         SELECT v FROM seq"
    )
}

static CAS_MOVE: LazyLock<String> = LazyLock::new(|| {
    cas_statement(
        "UPDATE floe_refs SET head = $3, record = $4 \
         WHERE name = $1 AND head = $2 AND {claimed} RETURNING 1",
    )
});
static CAS_CREATE: LazyLock<String> = LazyLock::new(|| {
    cas_statement(
        "INSERT INTO floe_refs (name, head, record) SELECT $1, $3, $4 \
         WHERE $2 IS NULL AND {claimed} ON CONFLICT (name) DO NOTHING RETURNING 1",
    )
});
static CAS_DELETE: LazyLock<String> = LazyLock::new(|| {
    cas_statement(
        "DELETE FROM floe_refs \
         WHERE name = $1 AND head = $2 AND $3 IS NULL AND $4 IS NULL AND {claimed} RETURNING 1",
    )
});
/// Expected absent and stays absent: logged only if the ref does not exist.
static CAS_ABSENT: LazyLock<String> = LazyLock::new(|| {
    cas_statement(
        "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM floe_refs WHERE name = $1) \
         AND $2 IS NULL AND $3 IS NULL AND $4 IS NULL AND {claimed}",
    )
});

impl PostgresBackend {
    /// `Backend::compare_and_swap_ref`: the move's statement in the shape its update asks
    /// for, then, when it matched no row, why (the fence, the claim, or the ref's head).
    pub(super) fn cas(&self, update: RefUpdate) -> BackendResult<CasOutcome> {
        let statement: &'static str = match (&update.expected, &update.new) {
            (Some(_), Some(_)) => &CAS_MOVE,
            (None, Some(_)) => &CAS_CREATE,
            (Some(_), None) => &CAS_DELETE,
            (None, None) => &CAS_ABSENT,
        };
        let name = update.name.as_str().to_owned();
        let expected = update.expected.map(|h| h.as_bytes().to_vec());
        let head = update.new.as_ref().map(|r| r.head.as_bytes().to_vec());
        let record = update.new.as_ref().map(encode_record);
        // The entry's own `seq` is assigned by the statement and kept in its column.
        let mut entry = update.reflog;
        entry.seq = 0;
        let entry = encode_entry(&entry);
        let (meta_key, meta_value) = match &update.meta {
            Some(m) => (Some(m.key.to_vec()), Some(m.value.to_vec())),
            None => (None, None),
        };
        let claim = update.meta.and_then(|m| m.claim);
        let (claim_key, claim_value) = match &claim {
            Some((k, v)) => (Some(k.to_vec()), Some(v.to_vec())),
            None => (None, None),
        };
        let fence = update.fence;
        let (fence_key, fence_value) = match &fence {
            Some((k, v)) => (Some(k.to_vec()), Some(v.to_vec())),
            None => (None, None),
        };
        let ref_name = update.name.clone();
        // The objects go in the move's own statement when they are few (they go in while the
        // statement holds the reflog counter's lock, which every move waits for), sorted by
        // hash (statements writing some of the same objects take them in one order); more
        // are written first.
        let mut objects = update.objects;
        let bytes: usize = objects.iter().map(|(_, b)| b.len()).sum();
        if objects.len() > OBJECTS_WITH_MOVE_MAX || bytes > OBJECT_BYTES_WITH_MOVE_MAX {
            self.put_objects(&objects)?;
            objects.clear();
        }
        objects.sort_unstable_by_key(|(hash, _)| *hash);
        let seq = self.with_client(move |client| {
            Box::pin(async move {
                let object_hashes: Vec<&[u8]> = objects
                    .iter()
                    .map(|(h, _)| h.as_bytes().as_slice())
                    .collect();
                let object_bytes: Vec<&[u8]> = objects.iter().map(|(_, b)| b.as_ref()).collect();
                let statement = client
                    .prepare_typed_cached(statement, &CAS_TYPES)
                    .await
                    .map_err(read_err)?;
                let row = client
                    .query_opt(
                        &statement,
                        &[
                            &name,
                            &expected,
                            &head,
                            &record,
                            &entry,
                            &meta_key,
                            &meta_value,
                            &claim_key,
                            &claim_value,
                            &fence_key,
                            &fence_value,
                            &object_hashes,
                            &object_bytes,
                        ],
                    )
                    .await
                    .map_err(write_err)?;
                Ok(row.map(|r| r.get::<_, i64>(0)))
            })
        })?;
        match seq {
            Some(seq) => Ok(CasOutcome::Applied {
                seq: seq as u64,
                ticket: 0,
            }),
            None => {
                if let Some((key, value)) = &fence
                    && self.meta_get(key)?.as_ref() != Some(value)
                {
                    return Ok(CasOutcome::FenceLost);
                }
                if let Some((key, value)) = &claim
                    && self.meta_get(key)?.as_ref() != Some(value)
                {
                    return Ok(CasOutcome::ClaimLost);
                }
                Ok(CasOutcome::Mismatch {
                    current: self.get_ref(&ref_name, RefView::Pending)?,
                })
            }
        }
    }
}
