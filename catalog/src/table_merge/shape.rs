//! The three-way merge of a table's shape (`../shared/notes/iceberg-merge.md` rules 12-16):
//! schema, partition specs, sort orders, properties and format version (rule 17, the
//! location, is checked before anything is read, in `mod.rs`). A change on one side is
//! taken; the same change on both sides is clean; different changes of one of them
//! conflict (their field, spec or order ids would collide, and files embed them).
//!
//! The result is the list of table updates that carry the source's changes onto the
//! target's metadata, applied through the same builder as every commit.

use std::collections::{BTreeSet, HashMap};

use iceberg::TableUpdate;
use iceberg::spec::{FormatVersion, SchemaRef, TableMetadata};

use super::Finding;
use super::history::Delta;

fn same_schema(a: &SchemaRef, b: &SchemaRef) -> bool {
    a.as_struct() == b.as_struct()
        && a.identifier_field_ids().collect::<BTreeSet<_>>()
            == b.identifier_field_ids().collect::<BTreeSet<_>>()
}

/// Whether a side changed its schema since the base (a column added and dropped again
/// used an id: that counts).
fn schema_changed(base: &TableMetadata, side: &TableMetadata) -> bool {
    !same_schema(base.current_schema(), side.current_schema())
        || base.last_column_id() != side.last_column_id()
}

/// The fields two schemas disagree on, by name.
fn schema_difference(a: &SchemaRef, b: &SchemaRef) -> Vec<String> {
    let names = |s: &SchemaRef| -> HashMap<i32, String> {
        s.as_struct()
            .fields()
            .iter()
            .map(|f| (f.id, format!("{} ({}, id {})", f.name, f.field_type, f.id)))
            .collect()
    };
    let (x, y) = (names(a), names(b));
    let mut out: BTreeSet<String> = BTreeSet::new();
    for (id, text) in x.iter().chain(y.iter()) {
        if x.get(id) != y.get(id) {
            out.insert(text.clone());
        }
    }
    out.into_iter().take(super::rules::INVOLVED_MAX).collect()
}

fn specs(m: &TableMetadata) -> Vec<(i32, String)> {
    let mut out: Vec<(i32, String)> = m
        .partition_specs_iter()
        .map(|s| (s.spec_id(), format!("{:?}", s.fields())))
        .collect();
    out.sort();
    out.push((m.default_partition_spec_id(), "default".to_owned()));
    out
}

fn orders(m: &TableMetadata) -> Vec<(i64, String)> {
    let mut out: Vec<(i64, String)> = m
        .sort_orders_iter()
        .map(|s| (s.order_id, format!("{:?}", s.fields)))
        .collect();
    out.sort();
    out.push((m.default_sort_order_id(), "default".to_owned()));
    out
}

/// The updates that bring the source's shape changes onto the target, or the conflict.
pub(super) fn merge(
    base: &TableMetadata,
    target: &TableMetadata,
    source: &TableMetadata,
    target_delta: &Delta,
    source_delta: &Delta,
) -> Result<Vec<TableUpdate>, Finding> {
    let mut updates = Vec::new();
    // Rule 16: format v3 holds deletion vectors, not v2 position delete files.
    for (upgraded, other, name) in [
        (target, source_delta, "source"),
        (source, target_delta, "target"),
    ] {
        let upgraded_to_v3 = upgraded.format_version() >= FormatVersion::V3
            && base.format_version() < FormatVersion::V3;
        let v2_deletes: Vec<String> = other
            .added
            .values()
            .filter(|(e, _)| {
                e.content() == iceberg::spec::DataContentType::PositionDeletes
                    && !e.is_deletion_vector()
            })
            .map(|(e, _)| e.path().to_owned())
            .take(super::rules::INVOLVED_MAX)
            .collect();
        if upgraded_to_v3 && !v2_deletes.is_empty() {
            return Err(Finding::new(
                "format-upgrade-vs-position-deletes",
                format!(
                    "one side upgraded the table to format v3 while the {name} wrote format v2 position delete files"
                ),
                v2_deletes,
            ));
        }
    }
    if source.format_version() > target.format_version() {
        updates.push(TableUpdate::UpgradeFormatVersion {
            format_version: source.format_version(),
        });
    }
    // Rules 12 and 13: schemas.
    let (t_schema, s_schema) = (schema_changed(base, target), schema_changed(base, source));
    if t_schema && s_schema {
        let identical = same_schema(target.current_schema(), source.current_schema())
            && target.last_column_id() == source.last_column_id();
        if !identical {
            return Err(Finding::new(
                "schema-changes-differ",
                "both sides changed the schema, differently (their new columns' ids would collide)"
                    .to_owned(),
                schema_difference(target.current_schema(), source.current_schema()),
            ));
        }
    } else if s_schema {
        // Every schema the source added (older files were written with them), the current
        // one last, so that the last column id covers columns added and dropped again.
        let mut added: Vec<&SchemaRef> = source
            .schemas_iter()
            .filter(|s| base.schema_by_id(s.schema_id()).is_none())
            .filter(|s| s.schema_id() != source.current_schema_id())
            .collect();
        added.sort_by_key(|s| s.schema_id());
        for s in added {
            updates.push(TableUpdate::AddSchema {
                schema: s.as_ref().clone(),
            });
        }
        updates.push(TableUpdate::AddSchema {
            schema: source.current_schema().as_ref().clone(),
        });
        updates.push(TableUpdate::SetCurrentSchema { schema_id: -1 });
    }
    // Rule 14: partition specs (their ids are in the source's manifests, so they must
    // keep them: checked once the metadata is built).
    let (t_specs, s_specs, b_specs) = (specs(target), specs(source), specs(base));
    if t_specs != b_specs && s_specs != b_specs && t_specs != s_specs {
        return Err(Finding::new(
            "partition-spec-changes-differ",
            "both sides changed the partitioning, differently".to_owned(),
            vec![
                format!("target default spec {}", target.default_partition_spec_id()),
                format!("source default spec {}", source.default_partition_spec_id()),
            ],
        ));
    }
    if s_specs != b_specs && t_specs == b_specs {
        let mut added: Vec<_> = source
            .partition_specs_iter()
            .filter(|s| base.partition_spec_by_id(s.spec_id()).is_none())
            .collect();
        added.sort_by_key(|s| s.spec_id());
        for s in added {
            updates.push(TableUpdate::AddSpec {
                spec: s.as_ref().clone().into_unbound(),
            });
        }
        updates.push(TableUpdate::SetDefaultSpec {
            spec_id: source.default_partition_spec_id(),
        });
    }
    // Sort orders, the same way.
    let (t_orders, s_orders, b_orders) = (orders(target), orders(source), orders(base));
    if t_orders != b_orders && s_orders != b_orders && t_orders != s_orders {
        return Err(Finding::new(
            "sort-order-changes-differ",
            "both sides changed the sort order, differently".to_owned(),
            Vec::new(),
        ));
    }
    if s_orders != b_orders && t_orders == b_orders {
        let mut added: Vec<_> = source
            .sort_orders_iter()
            .filter(|s| base.sort_order_by_id(s.order_id).is_none())
            .collect();
        added.sort_by_key(|s| s.order_id);
        for s in added {
            updates.push(TableUpdate::AddSortOrder {
                sort_order: s.as_ref().clone(),
            });
        }
        updates.push(TableUpdate::SetDefaultSortOrder {
            sort_order_id: source.default_sort_order_id(),
        });
    }
    // Rule 15: properties, key by key.
    let (b, t, s) = (base.properties(), target.properties(), source.properties());
    let keys: BTreeSet<&String> = b.keys().chain(t.keys()).chain(s.keys()).collect();
    let mut set = HashMap::new();
    let mut removed = Vec::new();
    let mut clashes = Vec::new();
    for k in keys {
        let (bv, tv, sv) = (b.get(k), t.get(k), s.get(k));
        if sv == bv || sv == tv {
            continue;
        }
        if tv != bv {
            clashes.push(format!(
                "{k}: target {}, source {}",
                tv.map_or("unset", String::as_str),
                sv.map_or("unset", String::as_str)
            ));
            continue;
        }
        match sv {
            Some(v) => {
                set.insert(k.clone(), v.clone());
            }
            None => removed.push(k.clone()),
        }
    }
    if !clashes.is_empty() {
        clashes.truncate(super::rules::INVOLVED_MAX);
        return Err(Finding::new(
            "property-clash",
            "both sides set a table property to different values".to_owned(),
            clashes,
        ));
    }
    if !set.is_empty() {
        updates.push(TableUpdate::SetProperties { updates: set });
    }
    if !removed.is_empty() {
        updates.push(TableUpdate::RemoveProperties { removals: removed });
    }
    Ok(updates)
}
