"""A run's outputs through the real clients: `floe run` landed db.base (80 rows) and
db.report (40 rows) on branch dev; PyIceberg and DuckDB read them there, and neither
finds them on main before a merge."""

from pyiceberg.exceptions import NoSuchTableError

from floe_client import URL, catalog, duckdb_connection

dev = catalog("floe", "dev")
assert dev.load_table("db.base").scan().to_arrow().num_rows == 80
report = dev.load_table("db.report").scan().to_arrow()
assert report.num_rows == 40, report.num_rows
assert sorted(report.column("id").to_pylist()) == list(range(20, 100, 2))
main = catalog("floe", "main")
for name in ("db.base", "db.report"):
    try:
        main.load_table(name)
        raise AssertionError(f"{name} is on main before a merge")
    except NoSuchTableError:
        pass

con = duckdb_connection()
con.execute(f"ATTACH 'dev' AS d (TYPE iceberg, ENDPOINT '{URL}/iceberg', AUTHORIZATION_TYPE 'none')")
con.execute(f"ATTACH 'main' AS m (TYPE iceberg, ENDPOINT '{URL}/iceberg', AUTHORIZATION_TYPE 'none')")
assert con.execute("SELECT count(*), min(id) FROM d.db.report").fetchall() == [(40, 20)]
assert con.execute("SELECT count(*) FROM d.db.base").fetchall() == [(80,)]
tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'm'").fetchall()}
assert "base" not in tables and "report" not in tables, tables
print("ok")
