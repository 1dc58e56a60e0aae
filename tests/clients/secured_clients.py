"""PyIceberg 0.12 and DuckDB 1.5.5 against a floe that requires tokens (issue 19): with a
dev's token (argv[2]) both write its branch `dev`, and both are refused on the protected
`main`; without a token PyIceberg is refused at its first call."""

import sys

import pyarrow as pa
from pyiceberg.catalog import load_catalog
from pyiceberg.exceptions import ForbiddenError, UnauthorizedError

from floe_client import URL, duckdb_connection, duckdb_meets_the_policy, ok

TOKEN = sys.argv[2]
AUTH = {"Authorization": f"Bearer {TOKEN}"}

ok("POST", "/api/v1/refs", {"name": "dev", "from": "main"}, AUTH)
dev = load_catalog("dev", type="rest", uri=URL + "/iceberg", warehouse="dev", token=TOKEN)
dev.create_namespace("s")
table = dev.create_table("s.t", schema=pa.schema([pa.field("id", pa.int64())]))
table.append(pa.table({"id": pa.array([1, 2], pa.int64())}))
assert dev.load_table("s.t").scan().to_arrow().num_rows == 2

main = load_catalog("main", type="rest", uri=URL + "/iceberg", warehouse="main", token=TOKEN)
try:
    main.create_namespace("nope")
    raise AssertionError("a dev created a namespace on the protected main")
except ForbiddenError as e:
    assert "main is protected" in str(e), e

try:
    load_catalog("anon", type="rest", uri=URL + "/iceberg", warehouse="dev", auth={"type": "noop"}).list_namespaces()
    raise AssertionError("a request without a token was served")
except UnauthorizedError:
    pass

con = duckdb_connection()
con.execute(f"CREATE SECRET floe (TYPE iceberg, TOKEN '{TOKEN}')")
duckdb_meets_the_policy(con, "dev", "floe")
print("ok")
