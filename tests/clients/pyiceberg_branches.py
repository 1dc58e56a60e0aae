"""PyIceberg on floe branches: write on main, branch, write on dev, merge, time travel,
overwrite, delete, schema evolution. Every step asserts; the last line is `ok`."""

import pyarrow as pa
from pyiceberg.types import LongType

from floe_client import SCHEME, URL, catalog, head, ok

main = catalog("main", "main")
main.create_namespace("sales", {"owner": "ana"})
assert main.load_namespace_properties("sales")["owner"] == "ana"
schema = pa.schema([("id", pa.int64()), ("name", pa.string())])
table = main.create_table("sales.orders", schema=schema)
assert table.metadata_location.startswith(SCHEME), table.metadata_location
table.append(pa.table({"id": [1, 2], "name": ["a", "b"]}))
assert main.load_table("sales.orders").scan().to_arrow().num_rows == 2
before = head("main")

ok("POST", "/api/v1/refs", {"name": "dev"})
dev = catalog("dev", "dev")
dev.load_table("sales.orders").append(pa.table({"id": [3], "name": ["c"]}))
assert dev.load_table("sales.orders").scan().to_arrow().num_rows == 3
assert main.load_table("sales.orders").scan().to_arrow().num_rows == 2, "main unchanged"

# Schema evolution on dev, invisible on main until merged.
with dev.load_table("sales.orders").update_schema() as update:
    update.add_column("qty", LongType())
assert [f.name for f in main.load_table("sales.orders").schema().fields] == ["id", "name"]
assert [f.name for f in dev.load_table("sales.orders").schema().fields] == ["id", "name", "qty"]

merged = ok("POST", "/api/v1/trees/main/merge", {"source": "dev"})
assert merged["kind"] == "fast-forward", merged
orders = main.load_table("sales.orders")
assert sorted(orders.scan().to_arrow().column("id").to_pylist()) == [1, 2, 3]
assert [f.name for f in orders.schema().fields] == ["id", "name", "qty"]

# Time travel: main as it was, by hash.
old = catalog("old", "main@" + before)
assert sorted(old.load_table("sales.orders").scan().to_arrow().column("id").to_pylist()) == [1, 2]
try:
    old.create_namespace("nope")
    raise AssertionError("a main@hash prefix must be read-only")
except Exception as e:  # noqa: BLE001
    assert "read-only" in str(e), e

# Overwrite and delete on dev; main keeps its rows.
t = dev.load_table("sales.orders")
t.overwrite(pa.table({"id": [9], "name": ["z"], "qty": [1]}))
assert dev.load_table("sales.orders").scan().to_arrow().to_pylist() == [{"id": 9, "name": "z", "qty": 1}]
dev.load_table("sales.orders").delete("id == 9")
assert dev.load_table("sales.orders").scan().to_arrow().num_rows == 0
assert main.load_table("sales.orders").scan().to_arrow().num_rows == 3

# Listing, existence, drop (files stay), and every write is one floe commit.
assert main.list_tables("sales") == [("sales", "orders")]
assert main.table_exists("sales.orders") and not main.table_exists("sales.nope")
log = ok("GET", "/api/v1/trees/dev/log?pageSize=100")["commits"]
messages = [c["message"] for c in log]
assert any(m.startswith("create table sales.orders") for m in messages), messages
assert any(m.startswith("commit to table sales.orders (append snapshot ") for m in messages), messages
assert any("add-schema" in m for m in messages), messages
location = dev.load_table("sales.orders").metadata_location
dev.drop_table("sales.orders")
assert not dev.table_exists("sales.orders") and main.table_exists("sales.orders")
# Read through the client's own FileIO (a local folder or the bucket).
assert main.load_table("sales.orders").io.new_input(location).exists(), "dropping never deletes files"
print("ok")
