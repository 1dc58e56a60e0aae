"""The Arrow handoff between two Python nodes (issue 17), timed in a worker environment.

floe's handoff is the worker's own code: the producer's `floe_worker.write_output` (an
Arrow IPC file) and the consumer's `floe_worker.read_inputs` (the file memory-mapped).
The baseline does the same through Parquet (pyarrow, Snappy): `pq.write_table`, then
`pq.read_table`. Each side runs REPEATS times, interleaved; medians are printed as JSON.

    python handoff.py ROWS FOLDER REPEATS
"""

import json
import os
import statistics
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import floe_worker


def main():
    rows, folder, repeats = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    ids = pa.array(range(rows), pa.int64())
    table = pa.table({
        "id": ids,
        "k": pc.cast(pc.divide(ids, 1000), pa.int32()),
        "v": pc.multiply(pc.cast(ids, pa.float64()), 0.5),
    })
    floe_handoff, floe_open, pq_handoff, pq_open = [], [], [], []
    for i in range(repeats):
        ipc = os.path.join(folder, f"out-{i}.arrow")
        t0 = time.perf_counter()
        floe_worker.write_output(table, ipc)
        t1 = time.perf_counter()
        got = floe_worker.read_inputs({"inputs": {"data": ipc}})["data"]
        t2 = time.perf_counter()
        assert got.num_rows == rows
        floe_handoff.append(t2 - t0)
        floe_open.append(t2 - t1)
        del got

        parquet = os.path.join(folder, f"out-{i}.parquet")
        t0 = time.perf_counter()
        pq.write_table(table, parquet, compression="snappy")
        t1 = time.perf_counter()
        got = pq.read_table(parquet)
        t2 = time.perf_counter()
        assert got.num_rows == rows
        pq_handoff.append(t2 - t0)
        pq_open.append(t2 - t1)
        del got
        os.remove(ipc)
        os.remove(parquet)
    print(json.dumps({
        "rows": rows,
        "ipc_bytes": table.nbytes,
        "floe_handoff_ms": statistics.median(floe_handoff) * 1e3,
        "floe_open_ms": statistics.median(floe_open) * 1e3,
        "parquet_handoff_ms": statistics.median(pq_handoff) * 1e3,
        "parquet_open_ms": statistics.median(pq_open) * 1e3,
    }))


if __name__ == "__main__":
    main()
