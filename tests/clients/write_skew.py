"""Write skew is impossible (github.com/apache/iceberg/issues/18552): two concurrent
`transactions/commit`, each adding a column to its own table and asserting the other
table's `current-schema-id` with no updates. Over 200 rounds, never both land. Control:
when each appends data to its own table instead (the other's schema does not change),
both land."""

import threading
import time

import pyarrow as pa
from pyiceberg.manifest import write_manifest_list

from floe_client import api, catalog

ROUNDS = 200
main = catalog("main", "main")
main.create_namespace("w")
for name in ("a", "b"):
    main.create_table(f"w.{name}", schema=pa.schema([("id", pa.int64())]))
# The client's FileIO as floe's loadTable configures it (a local folder, or the bucket).
IO = main.load_table("w.a").io


def load(name):
    status, reply = api("GET", f"/iceberg/v1/main/namespaces/w/tables/{name}")
    assert status == 200, reply
    return reply["metadata"]


def add_column(meta, column):
    schema = next(s for s in meta["schemas"] if s["schema-id"] == meta["current-schema-id"])
    fields = schema["fields"] + [{"id": meta["last-column-id"] + 1, "name": column, "required": False, "type": "long"}]
    new = {"type": "struct", "schema-id": meta["current-schema-id"] + 1, "fields": fields}
    return [{"action": "add-schema", "schema": new}, {"action": "set-current-schema", "schema-id": -1}]


def append(meta, n):
    snapshot_id = int(time.time() * 1000) * 10 + n
    parent = meta.get("current-snapshot-id")
    if parent is not None and parent < 0:
        parent = None
    sequence = meta.get("last-sequence-number", 0) + 1
    # The snapshot's manifest list is written first, as every client does (floe reads it
    # to check that the snapshot names only the table's own files); empty: the control is
    # about landing, not data.
    manifest_list = meta["location"] + f"/metadata/snap-{snapshot_id}.avro"
    with write_manifest_list(
        format_version=2,
        output_file=IO.new_output(manifest_list),
        snapshot_id=snapshot_id,
        parent_snapshot_id=parent,
        sequence_number=sequence,
        avro_compression="null",
    ) as writer:
        writer.add_manifests([])
    snapshot = {
        "snapshot-id": snapshot_id,
        "timestamp-ms": int(time.time() * 1000),
        "sequence-number": sequence,
        "manifest-list": manifest_list,
        "summary": {"operation": "append"},
        "schema-id": meta["current-schema-id"],
    }
    if parent is not None:
        snapshot["parent-snapshot-id"] = parent
    return [
        {"action": "add-snapshot", "snapshot": snapshot},
        {"action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": snapshot_id},
    ]


def change(own, other, own_meta, other_meta, updates):
    return {"table-changes": [
        {"identifier": {"namespace": ["w"], "name": own},
         "requirements": [{"type": "assert-current-schema-id", "current-schema-id": own_meta["current-schema-id"]}],
         "updates": updates},
        {"identifier": {"namespace": ["w"], "name": other},
         "requirements": [{"type": "assert-current-schema-id", "current-schema-id": other_meta["current-schema-id"]}],
         "updates": []},
    ]}


def race(bodies):
    barrier = threading.Barrier(len(bodies))
    results = [None] * len(bodies)

    def go(i):
        barrier.wait()
        results[i] = api("POST", "/iceberg/v1/main/transactions/commit", bodies[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


both = one = 0
for r in range(ROUNDS):
    a, b = load("a"), load("b")
    results = race([
        change("a", "b", a, b, add_column(a, f"a{r}")),
        change("b", "a", b, a, add_column(b, f"b{r}")),
    ])
    statuses = sorted(s for s, _ in results)
    assert statuses != [204, 204], f"round {r}: both landed: write skew"
    for status, reply in results:
        assert status in (204, 409), (status, reply)
        if status == 409:
            assert reply["error"]["type"] == "CommitFailedException", reply
    one += statuses.count(204)
assert one > 0, "some rounds must land one side"

# Control: appends keep the other's schema, so both land.
landed = 0
for r in range(20):
    a, b = load("a"), load("b")
    results = race([
        change("a", "b", a, b, append(a, 1)),
        change("b", "a", b, a, append(b, 2)),
    ])
    landed += sum(1 for s, _ in results if s == 204)
assert landed == 40, f"every control append lands ({landed} of 40)"
print(f"schema rounds: {one} landed of {2 * ROUNDS} attempts, never both")
print("ok")
