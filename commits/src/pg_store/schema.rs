//! The catalog's tables in PostgreSQL and their migrations.
//!
//! floe creates and migrates its own schema when a backend opens: one transaction under
//! an advisory lock (so servers starting together migrate once), the steps after the
//! stored `floe_schema_version` applied in order. A database migrated by a newer floe is
//! refused rather than misread.
//!
//! Keys collate as bytes: ref names are `text COLLATE "C"` and hashes and meta keys are
//! `bytea`, so listing and paging order is sled's and the memory backend's exactly.

use tokio_postgres::Client;

/// The advisory lock a migration holds: one per schema (`floe` as a number, and the
/// schema's name hashed by the server), so catalogs in different schemas of one database
/// migrate independently.
const LOCK_CLASS: i32 = 0x666c_6f65;

/// The steps, in order; the schema's version is the number of steps applied.
const STEPS: &[&str] = &[
    // 1: objects, refs, the reflog (with its per-ref index), meta and the reflog counter.
    r#"
    CREATE TABLE floe_objects (hash bytea PRIMARY KEY, bytes bytea NOT NULL);
    CREATE TABLE floe_refs (
        name text COLLATE "C" PRIMARY KEY,
        head bytea NOT NULL,
        record bytea NOT NULL
    );
    CREATE TABLE floe_reflog (
        seq bigint PRIMARY KEY,
        ref_name text COLLATE "C" NOT NULL,
        entry bytea NOT NULL
    );
    CREATE INDEX floe_reflog_by_ref ON floe_reflog (ref_name, seq);
    CREATE TABLE floe_meta (key bytea PRIMARY KEY, value bytea NOT NULL);
    CREATE TABLE floe_counters (name text PRIMARY KEY, v bigint NOT NULL);
    INSERT INTO floe_counters VALUES ('reflog', 0);
    "#,
];

/// The schema version this floe writes.
pub const SCHEMA_VERSION: i32 = STEPS.len() as i32;

/// Creates or migrates the tables in the connection's current schema.
pub async fn migrate(client: &mut Client) -> Result<(), String> {
    let pg = |e: tokio_postgres::Error| super::describe(&e);
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
        &[&LOCK_CLASS],
    )
    .await
    .map_err(pg)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS floe_schema_version (v integer NOT NULL)")
        .await
        .map_err(pg)?;
    let stored: i32 = tx
        .query_opt("SELECT v FROM floe_schema_version", &[])
        .await
        .map_err(pg)?
        .map_or(0, |row| row.get(0));
    if stored > SCHEMA_VERSION {
        return Err(format!(
            "the database holds a floe catalog of schema version {stored}; this floe knows versions up to {SCHEMA_VERSION}: run a newer floe"
        ));
    }
    if stored == SCHEMA_VERSION {
        return Ok(());
    }
    for step in &STEPS[stored as usize..] {
        tx.batch_execute(step).await.map_err(pg)?;
    }
    tx.execute("DELETE FROM floe_schema_version", &[])
        .await
        .map_err(pg)?;
    tx.execute(
        "INSERT INTO floe_schema_version VALUES ($1)",
        &[&SCHEMA_VERSION],
    )
    .await
    .map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    tracing::info!(
        from = stored,
        to = SCHEMA_VERSION,
        "migrated the catalog's schema"
    );
    Ok(())
}
