//! The statement of a ref move, in its four shapes (move, create, delete, stays absent),
//! with the objects it refers to.

use std::sync::LazyLock;

use tokio_postgres::types::Type;

/// The parameters of a ref move: name, expected head, new head, new record, reflog entry,
/// meta key and value, the claim's key and value, the fence's key and value (absent ones
/// NULL), and the hashes and bytes of the objects written with it (empty arrays for none).
pub(super) const CAS_TYPES: [Type; 13] = [
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

pub(super) static CAS_MOVE: LazyLock<String> = LazyLock::new(|| {
    cas_statement(
        "UPDATE floe_refs SET head = $3, record = $4 \
         WHERE name = $1 AND head = $2 AND {claimed} RETURNING 1",
    )
});
pub(super) static CAS_CREATE: LazyLock<String> = LazyLock::new(|| {
    cas_statement(
        "INSERT INTO floe_refs (name, head, record) SELECT $1, $3, $4 \
         WHERE $2 IS NULL AND {claimed} ON CONFLICT (name) DO NOTHING RETURNING 1",
    )
});
pub(super) static CAS_DELETE: LazyLock<String> = LazyLock::new(|| {
    cas_statement(
        "DELETE FROM floe_refs \
         WHERE name = $1 AND head = $2 AND $3 IS NULL AND $4 IS NULL AND {claimed} RETURNING 1",
    )
});
/// Expected absent and stays absent: logged only if the ref does not exist.
pub(super) static CAS_ABSENT: LazyLock<String> = LazyLock::new(|| {
    cas_statement(
        "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM floe_refs WHERE name = $1) \
         AND $2 IS NULL AND $3 IS NULL AND $4 IS NULL AND {claimed}",
    )
});
