"""Concurrent PyIceberg appenders on one table: every append lands exactly once (each
client retries the 409 CommitFailedException it gets when another landed first)."""

import threading

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException

from floe_client import catalog

WRITERS, APPENDS = 4, 5
main = catalog("main", "main")
main.create_namespace("c")
main.create_table("c.t", schema=pa.schema([("w", pa.int64()), ("i", pa.int64())]))
errors, conflicts = [], [0]


def writer(w):
    cat = catalog(f"w{w}", "main")
    try:
        for i in range(APPENDS):
            while True:
                try:
                    cat.load_table("c.t").append(pa.table({"w": [w], "i": [i]}))
                    break
                except CommitFailedException:
                    conflicts[0] += 1
    except Exception as e:  # noqa: BLE001
        errors.append(repr(e))


threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
rows = main.load_table("c.t").scan().to_arrow().to_pylist()
assert len(rows) == WRITERS * APPENDS, len(rows)
assert sorted((r["w"], r["i"]) for r in rows) == [(w, i) for w in range(WRITERS) for i in range(APPENDS)]
print(f"conflicts retried: {conflicts[0]}")
print("ok")
