"""floe's Python worker: runs one node of a pipeline in its own process.

Contract with the floe server (compute-adapter/src/runs/worker.rs), which starts
`python -I -u -m floe_worker` in the node's environment:

* stdin: one JSON document, the node's spec:
  `{"project": dir, "file": "models/x.py", "function": "f", "name": "node",
    "kind": "model" | "expectation", "inputs": {"arg": "/scratch/a.arrow", ...},
    "parameters": {"arg": value, ...}, "output": "/scratch/out.arrow" | null,
    "memory": bytes | null}`.
  Inputs are Arrow IPC files, opened memory-mapped (no copy); the output is
  written as an Arrow IPC file.
* descriptor 3: the result, one JSON document written at the end:
  `{"ok": true, "rows": n, "returned": "type"}` for a model,
  `{"ok": true, "passed": bool}` for an expectation,
  `{"ok": false, "error": message, "traceback": text}` when it failed.
* stdout and stderr are the user's: the server streams them into the run log
  line by line.

The worker imports pyarrow and the user's file only: pandas and polars are
imported by the user's code when it uses them, never by the worker.
"""

import importlib.util
import json
import os
import sys
import traceback


class Refused(Exception):
    """The worker refuses what the user's code did (its message is the whole answer)."""


def limit_memory(limit):
    """Bound the data segment (RLIMIT_DATA, not RLIMIT_AS: pyarrow's allocator
    reserves far more address space than it uses)."""
    if not limit:
        return
    import resource
    resource.setrlimit(resource.RLIMIT_DATA, (int(limit), int(limit)))


def load_function(spec):
    """Import the user's file (as the module its path names) and find the function."""
    project = spec["project"]
    path = os.path.join(project, spec["file"])
    module_name = spec["file"][:-3].replace("/", ".") if spec["file"].endswith(".py") else spec["file"]
    # The project's folder and the file's own folder are importable, as when a user runs
    # the file from the project's folder.
    for folder in (os.path.dirname(path), project):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    module_spec.loader.exec_module(module)
    function = getattr(module, spec["function"], None)
    if not callable(function):
        raise Refused(f"{spec['file']} defines no function {spec['function']}")
    return function


def read_inputs(spec):
    import pyarrow as pa

    tables = {}
    for arg, path in spec.get("inputs", {}).items():
        with pa.memory_map(path, "r") as source:
            tables[arg] = pa.ipc.open_file(source).read_all()
    return tables


def to_table(value, function):
    """What a model returned, as a pyarrow Table; `Refused` naming it otherwise."""
    import pyarrow as pa

    kind = type(value)
    owner = (kind.__module__ or "").split(".")[0]
    if isinstance(value, pa.Table):
        return value
    if owner == "pandas" and kind.__name__ == "DataFrame":
        return pa.Table.from_pandas(value, preserve_index=False)
    if owner == "polars" and kind.__name__ == "DataFrame":
        return value.to_arrow()
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    if isinstance(value, pa.RecordBatchReader):
        return value.read_all()
    if hasattr(value, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(value).read_all()
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        # Every key of every row is a column (a row without it holds a null there).
        columns = dict.fromkeys(key for row in value for key in row)
        return pa.table({key: [row.get(key) for row in value] for key in columns})
    what = "an empty list" if isinstance(value, list) and not value else \
        f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__qualname__
    raise Refused(
        f"{function} returned {what}; a model returns a pyarrow Table, a pandas or polars "
        "DataFrame, anything with __arrow_c_stream__, or a non-empty list of dicts")


def write_output(table, path):
    import pyarrow as pa

    tmp = path + ".part"
    with pa.OSFile(tmp, "wb") as sink:
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    os.replace(tmp, path)


def expectation_result(value, function):
    """An expectation answers a bool (Python's or numpy's)."""
    kind = type(value)
    if isinstance(value, bool) or (kind.__module__ == "numpy" and kind.__name__ in ("bool_", "bool")):
        return bool(value)
    raise Refused(f"{function} returned {kind.__qualname__}; an expectation returns True or False")


def run(spec):
    limit_memory(spec.get("memory"))
    function = load_function(spec)
    arguments = dict(spec.get("parameters", {}))
    arguments.update(read_inputs(spec))
    value = function(**arguments)
    name = spec["function"]
    if spec["kind"] == "expectation":
        return {"ok": True, "passed": expectation_result(value, name)}
    table = to_table(value, name)
    write_output(table, spec["output"])
    return {"ok": True, "rows": table.num_rows, "returned": f"{type(value).__module__}.{type(value).__qualname__}"}


def user_traceback(error):
    """The traceback from the user's code down, without the worker's own frames."""
    frames = traceback.extract_tb(error.__traceback__)
    here = os.path.abspath(__file__)
    kept = [f for f in frames if os.path.abspath(f.filename) != here]
    lines = traceback.format_list(kept) + traceback.format_exception_only(type(error), error)
    return "Traceback (most recent call last):\n" + "".join(lines)


def main():
    result_fd = 3
    # The user's subprocesses do not inherit the answer's descriptor.
    os.set_inheritable(result_fd, False)
    try:
        spec = json.load(sys.stdin)
    except ValueError as error:
        result = {"ok": False, "error": f"unreadable spec: {error}", "traceback": ""}
    else:
        try:
            result = run(spec)
        except MemoryError as error:
            limit = spec.get("memory")
            why = f"its limit is {limit} bytes" if limit else "the host's memory"
            result = {"ok": False, "error": f"it ran out of memory ({why})",
                      "traceback": user_traceback(error)}
        except BaseException as error:  # noqa: BLE001 - every failure is the node's answer
            message = str(error) or type(error).__name__
            if isinstance(error, AssertionError):
                message = f"assertion failed: {error}" if str(error) else "assertion failed"
            elif not isinstance(error, Refused):
                message = f"{type(error).__name__}: {message}"
            result = {"ok": False, "error": message, "traceback": user_traceback(error)}
    sys.stdout.flush()
    sys.stderr.flush()
    with os.fdopen(result_fd, "w") as out:
        json.dump(result, out)
    # Done: threads the function left running do not keep the node waiting.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
