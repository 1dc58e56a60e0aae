"""PyIceberg on a warehouse on S3 (issue 20), with its own S3 credentials and the endpoint,
region and addressing floe's loadTable answers: it creates a table, appends twice on a
branch, merges, and reads back; floe's query API reads the same rows from the bucket, and
DuckDB (its own S3 secret) too.

With `-` for both keys the client has no S3 credentials of its own and uses those floe
vends (`--vend-credentials static`; PyIceberg asks with X-Iceberg-Access-Delegation).

Arguments: floe's URL, the S3 access key id and secret the client uses (or `-`), the
bucket."""

import json
import sys
import urllib.request

import pyarrow as pa
from pyiceberg.catalog import load_catalog
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

from floe_client import URL, ok

KEY, SECRET, BUCKET = sys.argv[2], sys.argv[3], sys.argv[4]
VENDED = KEY == "-"


def catalog(warehouse):
    # Only credentials are the client's (or floe's, vended); endpoint, region and path
    # style come from floe.
    own = {} if VENDED else {"s3.access-key-id": KEY, "s3.secret-access-key": SECRET}
    return load_catalog(
        "floe", type="rest", uri=URL + "/iceberg", warehouse=warehouse, auth={"type": "noop"},
        **own,
    )


def query(sql, ref):
    req = urllib.request.Request(
        URL + "/api/v1/query", method="POST",
        data=json.dumps({"sql": sql, "ref": ref}).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


main = catalog("main")
main.create_namespace("db")
schema = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "name", StringType(), required=False),
)
t = main.create_table("db.t", schema=schema)
assert t.metadata.location.startswith(f"s3://{BUCKET}/wh/db/t-"), t.metadata.location
assert t.io.properties.get("s3.endpoint", "").startswith("http://127.0.0.1:"), t.io.properties
# The client's own key, or floe's vended one.
expected = "vended-key" if VENDED else KEY
assert t.io.properties.get("s3.access-key-id") == expected, t.io.properties.get("s3.access-key-id")
rows = lambda lo, hi: pa.table({
    "id": pa.array(range(lo, hi), pa.int64()),
    "name": pa.array([f"n{i}" for i in range(lo, hi)], pa.string()),
})
t.append(rows(0, 100))
# A staged create (assert-create) lands on S3 too.
with main.create_table_transaction("db.staged", schema=schema) as tx:
    tx.set_properties(origin="staged")
assert main.load_table("db.staged").properties["origin"] == "staged"

ok("POST", "/api/v1/refs", {"name": "dev", "from": "main"})
dev = catalog("dev").load_table("db.t")
dev.append(rows(100, 150))
assert catalog("main").load_table("db.t").scan().to_arrow().num_rows == 100
assert query("SELECT count(*) AS n FROM db.t", "dev") == [{"n": 150}]

ok("POST", "/api/v1/trees/main/merge", {"source": "dev"})
back = catalog("main").load_table("db.t").scan().to_arrow()
assert back.num_rows == 150, back.num_rows
assert sorted(back.column("id").to_pylist()) == list(range(150))
assert query("SELECT count(*) AS n, sum(id) AS s FROM db.t", "main") == [{"n": 150, "s": sum(range(150))}]
for f in catalog("main").load_table("db.t").inspect.files().column("file_path").to_pylist():
    assert f.startswith(f"s3://{BUCKET}/wh/db/t-"), f
if VENDED:
    print("ok")
    sys.exit(0)

# DuckDB with its own S3 secret (the endpoint as floe's loadTable names it).
from floe_client import duckdb_connection

endpoint = t.io.properties["s3.endpoint"].removeprefix("http://")
con = duckdb_connection()
con.execute(
    f"CREATE SECRET s3 (TYPE s3, KEY_ID '{KEY}', SECRET '{SECRET}', REGION 'us-east-1', "
    f"ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false)"
)
con.execute(f"ATTACH 'main' AS m (TYPE iceberg, ENDPOINT '{URL}/iceberg', AUTHORIZATION_TYPE 'none')")
assert con.execute("SELECT count(*), sum(id) FROM m.db.t").fetchall() == [(150, sum(range(150)))]
print("ok")
