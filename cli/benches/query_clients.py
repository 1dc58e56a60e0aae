"""The Python side of `cargo bench -p floe --bench query` (issue 8), run with the pinned
test venv: writes the benchmark's data and times DuckDB 1.5.5 (iceberg extension) on the
same tables through floe's Iceberg REST catalog.

  gen DIR PREFIX FILES ROWS GROUP
                              Parquet files PREFIX-N.parquet of ROWS rows in row groups
                              of GROUP rows: id, k (id % 100), v (double)
  partitioned URL ROWS PARTS  db.p, partitioned by region (identity), written by PyIceberg
  duckdb URL REPEATS FAST SQL...
                              per query: the median wall time of REPEATS runs (FAST runs
                              when the warm-up took under 20 ms) after one warm-up, and
                              the data files DuckDB read (EXPLAIN ANALYZE)
"""

import json
import os
import statistics
import sys
import time


def gen(folder, prefix, files, rows, group):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for f in range(files):
        start = f * rows
        ids = pa.array(range(start, start + rows), pa.int64())
        table = pa.table({
            "id": ids,
            "k": pc.subtract(ids, pc.multiply(pc.divide(ids, 100), 100)),
            "v": pc.multiply(pc.cast(ids, pa.float64()), 0.5),
        })
        pq.write_table(table, os.path.join(folder, f"{prefix}-{f}.parquet"), row_group_size=group)
    print("ok")


def partitioned(url, rows, parts):
    import pyarrow as pa
    from pyiceberg.catalog import load_catalog
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.types import DoubleType, LongType, NestedField, StringType

    cat = load_catalog("floe", type="rest", uri=url + "/iceberg", warehouse="main", auth={"type": "noop"})
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "region", StringType(), required=False),
        NestedField(3, "v", DoubleType(), required=False),
    )
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="region"))
    t = cat.create_table("db.p", schema=schema, partition_spec=spec)
    t.append(pa.table({
        "id": pa.array(range(rows), pa.int64()),
        "region": pa.array([f"r{i % parts:02d}" for i in range(rows)], pa.string()),
        "v": pa.array([i * 0.25 for i in range(rows)], pa.float64()),
    }))
    print("ok")


def duck(url, repeats, fast_repeats, queries):
    import duckdb
    import duckdb_extension_avro as avro
    import duckdb_extension_httpfs as httpfs
    import duckdb_extension_iceberg as iceberg

    con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
    for module, name in ((httpfs, "httpfs"), (avro, "avro"), (iceberg, "iceberg")):
        path = f"{os.path.dirname(module.__file__)}/extensions/v{duckdb.__version__}/{name}.duckdb_extension"
        con.execute(f"LOAD '{path}'")
    con.execute(f"ATTACH 'main' AS m (TYPE iceberg, ENDPOINT '{url}/iceberg', AUTHORIZATION_TYPE 'none')")
    for sql in queries:
        duck_sql = sql.replace("db.", "m.db.")
        started = time.perf_counter()
        con.execute(duck_sql).fetchall()
        warm = time.perf_counter() - started
        times = []
        for _ in range(fast_repeats if warm < 0.020 else repeats):
            started = time.perf_counter()
            rows = con.execute(duck_sql).fetchall()
            times.append(time.perf_counter() - started)
        plan = con.execute("EXPLAIN ANALYZE " + duck_sql).fetchall()[0][1]
        files = sum(int(line.split("Total Files Read:")[1].strip(" │")) for line in plan.splitlines() if "Total Files Read:" in line)
        print(json.dumps({"sql": sql, "median_s": statistics.median(times), "files": files, "rows": len(rows), "first": [str(c) for c in rows[0]] if rows else []}))
    print("ok")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "gen":
        gen(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    elif mode == "partitioned":
        partitioned(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "duckdb":
        duck(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:])
    else:
        sys.exit(f"unknown mode {mode}")
