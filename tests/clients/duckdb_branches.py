"""DuckDB 1.5.5 with the iceberg, httpfs and avro extensions on floe branches: attach main
and dev; create, insert, delete and select on dev; main unchanged until the merge."""

from floe_client import DUCKDB_ATTACH, URL, duckdb_connection, ok

ok("POST", "/api/v1/refs", {"name": "dev"})
con = duckdb_connection()
for alias, ref in (("m", "main"), ("d", "dev")):
    con.execute(f"ATTACH '{ref}' AS {alias} (TYPE iceberg, ENDPOINT '{URL}/iceberg', AUTHORIZATION_TYPE 'none'{DUCKDB_ATTACH})")
con.execute("CREATE SCHEMA d.s")
con.execute("CREATE TABLE d.s.t (id INTEGER, name VARCHAR)")
con.execute("INSERT INTO d.s.t VALUES (1, 'a'), (2, 'b')")
con.execute("INSERT INTO d.s.t VALUES (3, 'c')")
con.execute("DELETE FROM d.s.t WHERE id = 2")
assert con.execute("SELECT id, name FROM d.s.t ORDER BY id").fetchall() == [(1, "a"), (3, "c")]
tables = [tuple(r[:3]) for r in con.execute("SHOW ALL TABLES").fetchall()]
assert tables == [("d", "s", "t")], tables
merged = ok("POST", "/api/v1/trees/main/merge", {"source": "dev"})
assert merged["kind"] == "fast-forward", merged
con.execute("DETACH m")
con.execute(f"ATTACH 'main' AS m (TYPE iceberg, ENDPOINT '{URL}/iceberg', AUTHORIZATION_TYPE 'none'{DUCKDB_ATTACH})")
assert con.execute("SELECT id FROM m.s.t ORDER BY id").fetchall() == [(1,), (3,)]
print("ok")
