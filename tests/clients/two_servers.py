"""Two floe servers on one catalog (PostgreSQL): PyIceberg appends through the first while
DuckDB inserts through the second, into one table on one branch, at the same time. Every
write lands exactly once (a writer that lost a race retries), and both servers read the
same rows. Arguments: the first server's URL, then the second's."""

import sys
import threading

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException

from floe_client import DUCKDB_ATTACH, catalog, duckdb_connection

URL_B = sys.argv[2].rstrip("/")
ROUNDS, ROWS = 10, 10
a = catalog("a", "main")
a.create_namespace("two")
a.create_table("two.t", schema=pa.schema([("writer", pa.string()), ("i", pa.int64())]))
errors, retries = [], [0]
# Both writers connect first, then write at once.
ready = threading.Barrier(2)


def pyiceberg_writer():
    try:
        cat = catalog("pa", "main")
        cat.load_table("two.t")
        ready.wait()
        for r in range(ROUNDS):
            rows = pa.table({"writer": ["py"] * ROWS, "i": [r * ROWS + k for k in range(ROWS)]})
            while True:
                try:
                    cat.load_table("two.t").append(rows)
                    break
                except CommitFailedException:
                    retries[0] += 1
    except Exception as e:  # noqa: BLE001
        errors.append("pyiceberg: " + repr(e))


def duckdb_writer():
    try:
        con = duckdb_connection()
        con.execute(f"ATTACH 'main' AS b (TYPE iceberg, ENDPOINT '{URL_B}/iceberg', AUTHORIZATION_TYPE 'none'{DUCKDB_ATTACH})")
        ready.wait()
        for r in range(ROUNDS):
            values = ", ".join(f"('duck', {r * ROWS + k})" for k in range(ROWS))
            for attempt in range(50):
                try:
                    con.execute(f"INSERT INTO b.two.t VALUES {values}")
                    break
                except Exception as e:  # noqa: BLE001
                    # A lost race: another writer landed first (409); try again.
                    if "409" not in str(e) and "onflict" not in str(e) and "ommit" not in str(e):
                        raise
                    retries[0] += 1
            else:
                raise RuntimeError("DuckDB kept losing races")
    except Exception as e:  # noqa: BLE001
        errors.append("duckdb: " + repr(e))


threads = [threading.Thread(target=pyiceberg_writer), threading.Thread(target=duckdb_writer)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
expected = sorted([("py", i) for i in range(ROUNDS * ROWS)] + [("duck", i) for i in range(ROUNDS * ROWS)])
for name, url in (("a", None), ("b", URL_B)):
    cat = catalog(f"read-{name}", "main") if url is None else None
    if cat is None:
        from pyiceberg.catalog import load_catalog

        cat = load_catalog("read-b", type="rest", uri=url + "/iceberg", warehouse="main", auth={"type": "noop"})
    rows = cat.load_table("two.t").scan().to_arrow().to_pylist()
    got = sorted((r["writer"], r["i"]) for r in rows)
    assert got == expected, (name, len(got))
con = duckdb_connection()
con.execute(f"ATTACH 'main' AS c (TYPE iceberg, ENDPOINT '{URL_B}/iceberg', AUTHORIZATION_TYPE 'none'{DUCKDB_ATTACH})")
assert con.execute("SELECT count(*) FROM c.two.t").fetchone()[0] == 2 * ROUNDS * ROWS
print(f"retries after lost races: {retries[0]}")
print("ok")
