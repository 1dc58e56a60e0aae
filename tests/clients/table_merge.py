"""The Iceberg-aware merge (issue 22) with real clients: two branches that both wrote one
table merge at the level of its files; real conflicts name their rule. Each scenario runs
in a namespace of its own, on branches of its own. Every step asserts; the last line is
`ok`."""

import pyarrow as pa
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import LongType, NestedField, StringType

from floe_client import DUCKDB_ATTACH, URL, api, catalog, duckdb_connection, head, ok

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "region", StringType(), required=False),
)
BY_REGION = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="region"))


def rows(ids, region):
    return pa.table({"id": pa.array(ids, pa.int64()), "region": pa.array([region] * len(ids), pa.string())})


def branch(name, source="main"):
    ok("POST", "/api/v1/refs", {"name": name, "from": source})
    return catalog(name, name)


def ids(cat, table):
    return sorted(cat.load_table(table).scan().to_arrow().column("id").to_pylist())


def merge(source, into="main", **options):
    status, reply = api("POST", f"/api/v1/trees/{into}/merge", {"source": source, **options})
    return status, reply


def merged(source, into="main", **options):
    status, reply = merge(source, into, **options)
    assert status == 200, (source, into, status, reply)
    return reply


def conflict(source, into="main", **options):
    status, reply = merge(source, into, **options)
    assert status == 409, (source, into, status, reply)
    [c] = reply["conflicts"]
    assert "reason" in c, c
    return c["reason"]


def no_duplicate_files(table):
    paths = table.inspect.files().column("file_path").to_pylist()
    assert len(paths) == len(set(paths)), paths


def sequence_numbers_rise(table):
    chain, at = [], table.metadata.current_snapshot()
    while at is not None:
        chain.append(at.sequence_number)
        at = table.metadata.snapshot_by_id(at.parent_snapshot_id) if at.parent_snapshot_id else None
    assert chain == sorted(chain, reverse=True) and len(set(chain)) == len(chain), chain


def duckdb_attach(con, alias, ref):
    con.execute(f"ATTACH '{ref}' AS {alias} (TYPE iceberg, ENDPOINT '{URL}/iceberg', AUTHORIZATION_TYPE 'none'{DUCKDB_ATTACH})")


main = catalog("main", "main")

# M1: PyIceberg appends on one branch and DuckDB inserts on another; both merged.
main.create_namespace("m1")
main.create_table("m1.t", schema=SCHEMA).append(rows([1, 2], "eu"))
a, b = branch("m1-a"), branch("m1-b")
a.load_table("m1.t").append(rows([10, 11], "us"))
con = duckdb_connection()
duckdb_attach(con, "b", "m1-b")
con.execute("INSERT INTO b.m1.t VALUES (20, 'eu'), (21, 'asia')")
assert merged("m1-a")["kind"] == "fast-forward"
reply = merged("m1-b")
assert reply["kind"] == "merged", reply
[report] = reply["tables"]
assert report["key"] == "m1.t" and report["isolation"] == "serializable", report
assert report["dataFilesAdded"] == 1 and report["filesRemoved"] == 0, report
t = main.load_table("m1.t")
assert ids(main, "m1.t") == [1, 2, 10, 11, 20, 21]
no_duplicate_files(t)
sequence_numbers_rise(t)
assert t.metadata.current_snapshot().summary["source-snapshot-id"], t.metadata.current_snapshot().summary
con.execute("DETACH b")
duckdb_attach(con, "m", "main")
assert [r[0] for r in con.execute("SELECT id FROM m.m1.t ORDER BY id").fetchall()] == [1, 2, 10, 11, 20, 21]
con.execute("DETACH m")

# M2: an append against a copy-on-write delete, in other partitions (clean) and in the
# same one (conflict under serializable; merged under snapshot, the deleted rows stay
# deleted).
main.create_namespace("m2")
main.create_table("m2.t", schema=SCHEMA, partition_spec=BY_REGION).append(
    pa.concat_tables([rows([1, 2], "eu"), rows([3, 4], "us")])
)
x = branch("m2-x")
x.load_table("m2.t").delete("region == 'eu'")
main.load_table("m2.t").append(rows([5], "us"))
merged("m2-x")
assert ids(main, "m2.t") == [3, 4, 5]
y = branch("m2-y")
y.load_table("m2.t").delete("id == 3")
main.load_table("m2.t").append(rows([6], "us"))
reason = conflict("m2-y")
assert reason["rule"] == "overwrite-vs-append", reason
assert "snapshot" in reason["hint"] and reason["involved"], reason
assert reason["sourceOperations"] and reason["targetOperations"], reason
merged("m2-y", isolation="snapshot")
assert ids(main, "m2.t") == [4, 5, 6]
no_duplicate_files(main.load_table("m2.t"))

# M3: two copy-on-write deletes rewriting one file conflict (a double rewrite).
main.create_namespace("m3")
main.create_table("m3.t", schema=SCHEMA).append(rows([1, 2, 3], "eu"))
p = branch("m3-p")
p.load_table("m3.t").delete("id == 1")
main.load_table("m3.t").delete("id == 2")
assert conflict("m3-p")["rule"] == "both-removed-file"
assert ids(main, "m3.t") == [1, 3], "a conflicting merge changes nothing"

# M4: DuckDB deletes one row on both sides (merge-on-read position deletes): clean.
main.create_namespace("m4")
main.create_table("m4.t", schema=SCHEMA).append(rows([1, 2, 3, 4], "eu"))
branch("m4-d")
con = duckdb_connection()
duckdb_attach(con, "d", "m4-d")
duckdb_attach(con, "m", "main")
con.execute("DELETE FROM d.m4.t WHERE id = 2")
con.execute("DELETE FROM m.m4.t WHERE id = 2")
con.execute("DELETE FROM m.m4.t WHERE id = 4")
merged("m4-d")
assert ids(main, "m4.t") == [1, 3]
con.execute("DETACH m")
duckdb_attach(con, "m", "main")
assert [r[0] for r in con.execute("SELECT id FROM m.m4.t ORDER BY id").fetchall()] == [1, 3]
con.execute("DETACH m")
con.execute("DETACH d")

# M5: a column added on one side and old-shape rows on the other: clean, the new column
# null for the other side's rows; two different columns: conflict; the same column on both
# sides: clean.
main.create_namespace("m5")
main.create_table("m5.t", schema=SCHEMA).append(rows([1], "eu"))
e = branch("m5-e")
with e.load_table("m5.t").update_schema() as u:
    u.add_column("qty", LongType())
e.load_table("m5.t").append(pa.table({"id": [2], "region": ["eu"], "qty": [7]}, schema=e.load_table("m5.t").schema().as_arrow()))
main.load_table("m5.t").append(rows([3], "us"))
merged("m5-e")
t = main.load_table("m5.t")
assert [f.name for f in t.schema().fields] == ["id", "region", "qty"]
got = sorted((r["id"], r["qty"]) for r in t.scan().to_arrow().to_pylist())
assert got == [(1, None), (2, 7), (3, None)], got
f1, f2 = branch("m5-f1"), branch("m5-f2")
with f1.load_table("m5.t").update_schema() as u:
    u.add_column("x", LongType())
with f2.load_table("m5.t").update_schema() as u:
    u.add_column("y", StringType())
f1.load_table("m5.t").append(pa.table({"id": [4], "region": ["eu"], "qty": [1], "x": [1]}, schema=f1.load_table("m5.t").schema().as_arrow()))
f2.load_table("m5.t").append(pa.table({"id": [5], "region": ["eu"], "qty": [1], "y": ["y"]}, schema=f2.load_table("m5.t").schema().as_arrow()))
assert conflict("m5-f1", into="m5-f2")["rule"] == "schema-changes-differ"
g1, g2 = branch("m5-g1"), branch("m5-g2")
for g in (g1, g2):
    with g.load_table("m5.t").update_schema() as u:
        u.add_column("z", LongType())
g1.load_table("m5.t").append(pa.table({"id": [6], "region": ["eu"], "qty": [1], "z": [6]}, schema=g1.load_table("m5.t").schema().as_arrow()))
g2.load_table("m5.t").append(pa.table({"id": [7], "region": ["eu"], "qty": [1], "z": [7]}, schema=g2.load_table("m5.t").schema().as_arrow()))
merged("m5-g1", into="m5-g2")
got = sorted((r["id"], r["z"]) for r in g2.load_table("m5.t").scan().to_arrow().to_pylist())
assert got == [(1, None), (2, None), (3, None), (6, 6), (7, 7)], got

# M6: partition spec evolution on one side, appends on the other: clean; DuckDB reads
# files of both specs.
main.create_namespace("m6")
main.create_table("m6.t", schema=SCHEMA).append(rows([1], "eu"))
s = branch("m6-s")
with s.load_table("m6.t").update_spec() as u:
    u.add_identity("region")
s.load_table("m6.t").append(rows([2], "us"))
main.load_table("m6.t").append(rows([3], "eu"))
merged("m6-s")
t = main.load_table("m6.t")
assert len(t.metadata.partition_specs) == 2 and t.spec().fields, t.metadata.partition_specs
assert ids(main, "m6.t") == [1, 2, 3]
con = duckdb_connection()
duckdb_attach(con, "m", "main")
assert [r[0] for r in con.execute("SELECT id FROM m.m6.t ORDER BY id").fetchall()] == [1, 2, 3]
con.execute("DETACH m")

# M7: a property set to different values on both sides conflicts; M8: a table dropped on
# one side and appended to on the other conflicts.
main.create_namespace("m7")
main.create_table("m7.t", schema=SCHEMA).append(rows([1], "eu"))
q = branch("m7-q")
with q.load_table("m7.t").transaction() as tx:
    tx.set_properties(owner="q")
with main.load_table("m7.t").transaction() as tx:
    tx.set_properties(owner="main")
reason = conflict("m7-q")
assert reason["rule"] == "property-clash" and "owner" in reason["involved"][0], reason
d = branch("m7-drop")
d.drop_table("m7.t")
main.load_table("m7.t").append(rows([2], "eu"))
assert conflict("m7-drop")["rule"] == "dropped-vs-changed"

# M9: repeated and criss-cross merges never duplicate a file.
main.create_namespace("m9")
main.create_table("m9.t", schema=SCHEMA).append(rows([1], "eu"))
dev = branch("m9-dev")
dev.load_table("m9.t").append(rows([2], "eu"))
main.load_table("m9.t").append(rows([3], "eu"))
merged("m9-dev")
dev.load_table("m9.t").append(rows([4], "eu"))
main.load_table("m9.t").append(rows([5], "eu"))
merged("m9-dev")
assert ids(main, "m9.t") == [1, 2, 3, 4, 5]
merged("main", into="m9-dev")
assert ids(dev, "m9.t") == [1, 2, 3, 4, 5]
dev.load_table("m9.t").append(rows([6], "eu"))
main.load_table("m9.t").append(rows([7], "eu"))
merged("m9-dev")
merged("main", into="m9-dev")
assert ids(main, "m9.t") == [1, 2, 3, 4, 5, 6, 7] == ids(dev, "m9.t")
no_duplicate_files(main.load_table("m9.t"))
no_duplicate_files(dev.load_table("m9.t"))
sequence_numbers_rise(main.load_table("m9.t"))

# M10: a dry run reports what the merge does, and writes nothing.
main.create_namespace("m10")
main.create_table("m10.t", schema=SCHEMA).append(rows([1], "eu"))
w = branch("m10-w")
w.load_table("m10.t").append(rows([2], "eu"))
main.load_table("m10.t").append(rows([3], "eu"))
before, location = head("main"), main.load_table("m10.t").metadata_location
dry = merged("m10-w", dryRun=True)
assert head("main") == before and main.load_table("m10.t").metadata_location == location
assert not main.load_table("m10.t").io.new_input(dry["tables"][0]["metadataLocation"]).exists()
real = merged("m10-w")
strip = lambda t: {k: v for k, v in t.items() if k != "metadataLocation"}  # noqa: E731
assert [strip(t) for t in dry["tables"]] == [strip(t) for t in real["tables"]], (dry, real)
assert ids(main, "m10.t") == [1, 2, 3]

# Turned off, the same kind of merge conflicts at the key.
main.create_namespace("m11")
main.create_table("m11.t", schema=SCHEMA).append(rows([1], "eu"))
o = branch("m11-o")
o.load_table("m11.t").append(rows([2], "eu"))
main.load_table("m11.t").append(rows([3], "eu"))
status, reply = merge("m11-o", tableMerge=False)
assert status == 409 and "reason" not in reply["conflicts"][0], reply
print("ok")
