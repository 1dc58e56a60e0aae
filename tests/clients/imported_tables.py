"""floe's query API and imports beside the real clients: tables floe imported (Parquet
copied as it is with a name mapping, CSV converted) read the same through PyIceberg, DuckDB
and floe's query API; a partitioned table PyIceberg wrote is pruned by partition; rows
DuckDB deletes (delete files) are gone from floe's answers too.

The Rust side has imported db.t (ids 0..1000 from Parquet, 1000..1100 from CSV) first."""

import json
import urllib.request

import pyarrow as pa
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import DoubleType, LongType, NestedField, StringType

from floe_client import URL, catalog, duckdb_connection

def query(sql, ref="main"):
    """floe's query API: (rows, files scanned, files total)."""
    req = urllib.request.Request(
        URL + "/api/v1/query", method="POST",
        data=json.dumps({"sql": sql, "ref": ref}).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(req) as r:
        return (json.loads(r.read()), int(r.headers["Floe-Files-Scanned"]), int(r.headers["Floe-Files-Total"]))

cat = catalog("floe", "main")
t = cat.load_table("db.t")
arrow = t.scan().to_arrow()
assert arrow.num_rows == 1100, arrow.num_rows
assert sum(arrow.column("id").to_pylist()) == sum(range(1100))
rows, _, _ = query("SELECT count(*) AS n, sum(id) AS s, min(name) AS lo FROM db.t")
assert rows == [{"n": 1100, "s": sum(range(1100)), "lo": min(arrow.column("name").to_pylist())}], rows

con = duckdb_connection()
con.execute(f"ATTACH 'main' AS m (TYPE iceberg, ENDPOINT '{URL}/iceberg', AUTHORIZATION_TYPE 'none')")
assert con.execute("SELECT count(*), sum(id) FROM m.db.t").fetchall() == [(1100, sum(range(1100)))]

# A partitioned table written by PyIceberg: one file per region; a filter on the region
# reads one file.
schema = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "region", StringType(), required=False),
    NestedField(3, "v", DoubleType(), required=False),
)
spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="region"))
p = cat.create_table("db.p", schema=schema, partition_spec=spec)
regions = ["north", "south", "east", "west"]
p.append(pa.table({
    "id": pa.array(range(400), pa.int64()),
    "region": pa.array([regions[i % 4] for i in range(400)], pa.string()),
    "v": pa.array([1.0] * 400, pa.float64()),
}))
rows, scanned, total = query("SELECT count(*) AS n, sum(v) AS s FROM db.p WHERE region = 'east'")
assert rows == [{"n": 100, "s": 100.0}], rows
assert (scanned, total) == (1, 4), (scanned, total)
rows, scanned, _ = query("SELECT sum(v) AS s FROM db.p")
assert rows == [{"s": 400.0}] and scanned == 4, (rows, scanned)
# Counts the manifests decide (the region is an identity partition) read no data file.
rows, scanned, total = query("SELECT count(*) AS n, min(id) AS lo FROM db.p WHERE region = 'east'")
assert rows == [{"n": 100, "lo": 2}] and (scanned, total) == (0, 4), (rows, scanned, total)
rows, scanned, _ = query("SELECT count(*) AS n FROM db.p")
assert rows == [{"n": 400}] and scanned == 0, (rows, scanned)

# floe imports more rows into the partitioned table (split by region); every client
# reads them, and the region filter still reads only that region's files.
boundary = "floe-scenario"
rows = "id,region,v\n" + "".join(f"{400 + i},{regions[i % 4]},0.5\n" for i in range(40))
request = json.dumps({"table": "db.p", "mode": "append"})
body = (
    f"--{boundary}\r\nContent-Disposition: form-data; name=\"request\"\r\n\r\n{request}\r\n"
    f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"more.csv\"\r\n\r\n{rows}\r\n"
    f"--{boundary}--\r\n"
).encode()
req = urllib.request.Request(
    URL + "/api/v1/imports", method="POST", data=body,
    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
)
with urllib.request.urlopen(req) as r:
    imported = json.loads(r.read())
assert len(imported["files"][0]["locations"]) == 4, imported
assert cat.load_table("db.p").scan().to_arrow().num_rows == 440
assert con.execute("SELECT count(*) FROM m.db.p WHERE region = 'east'").fetchall() == [(110,)]
rows, scanned, total = query("SELECT count(*) AS n, sum(v) AS s FROM db.p WHERE region = 'east'")
assert rows == [{"n": 110, "s": 105.0}], rows
assert (scanned, total) == (2, 8), (scanned, total)

# DuckDB deletes rows of the imported table; floe's answers leave them out.
con.execute("DELETE FROM m.db.t WHERE id < 10")
rows, scanned, _ = query("SELECT count(*) AS n, min(id) AS lo FROM db.t")
assert rows == [{"n": 1090, "lo": 10}], rows
assert scanned > 0, "a file with deletes is counted by reading it"
assert cat.load_table("db.t").scan().to_arrow().num_rows == 1090
print("ok")
