"""Shared helpers of floe-client's tests: a real `floe serve` (the binary `FLOE_BIN`
names) on a free port over a fresh data folder, one per test class, and small fixtures
(CSV files, pipeline projects).

The package under test is imported from this tree (`../src`), not from an installed copy;
`test_install.py` checks the installed one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACKAGE_ROOT / "src"))

import floe  # noqa: E402  (after the path above)

# How long `floe serve` may take to say where it listens, and to stop.
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20


def floe_bin() -> str:
    """The `floe` binary: FLOE_BIN, else `floe` on PATH. Without either the tests skip,
    saying so (the Rust test that runs them always sets FLOE_BIN and refuses skips)."""
    path = os.environ.get("FLOE_BIN") or shutil.which("floe")
    if not path:
        raise unittest.SkipTest("set FLOE_BIN to the floe binary (cargo build -p floe)")
    return path


class Server:
    """A running `floe serve`, stopped by `stop()` (SIGTERM, then SIGKILL)."""

    def __init__(self, *extra: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="floe-client-test-"))
        self.stderr = open(self.dir / "serve.log", "wb")
        self.process = subprocess.Popen(
            [floe_bin(), "serve", "--addr", "127.0.0.1:0", "--data-dir",
             str(self.dir / "data"), *extra],
            stdout=subprocess.PIPE, stderr=self.stderr,
        )
        assert self.process.stdout is not None
        # The first line says where it listens: `... listening on http://ADDR, data in DIR`.
        line = self.process.stdout.readline().decode()
        if "http://" not in line or "data in " not in line:
            self.stop()
            raise RuntimeError(f"floe serve did not start: {line!r}\n{self.log()}")
        self.url = "http://" + line.split("http://", 1)[1].split(",", 1)[0]

    def log(self) -> str:
        self.stderr.flush()
        return (self.dir / "serve.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class ServerTest(unittest.TestCase):
    """A test class with its own server (`cls.server`) and client (`cls.client`)."""

    server: Server
    client: floe.Client
    work: Path
    server_args: tuple[str, ...] = ()

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = Server(*cls.server_args)
        cls.client = floe.Client(cls.server.url)
        cls.work = Path(tempfile.mkdtemp(prefix="floe-client-files-"))

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    def write(self, relative: str, text: str) -> Path:
        """A file under this class's work folder."""
        path = self.work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path


def csv_text(rows: list[tuple[int, str, float]]) -> str:
    """CSV with the header `id,name,fare`."""
    return "id,name,fare\n" + "".join(f"{i},{n},{f}\n" for i, n, f in rows)


PROJECT_FILE = """\
project:
  id: 7c0ffee1
  name: fares
parameters:
  min_fare:
    type: float
    default: 2.0
  fail:
    type: bool
    default: false
defaults:
  namespace: {namespace}
"""

# A SQL model over `{source}` and a Python model over it, which prints and can be made to
# fail through the `fail` parameter.
SQL_MODEL = """\
-- bauplan: materialization_strategy = REPLACE
SELECT id, name, fare FROM {source} WHERE fare >= $min_fare
"""

PYTHON_MODELS = """\
import bauplan


@bauplan.model(materialization_strategy="REPLACE")
def fare_totals(fares=bauplan.Model("fares"), fail=bauplan.Parameter("fail")):
    import pyarrow as pa
    import pyarrow.compute as pc

    if fail:
        raise ValueError("asked to fail")
    print("totalling", fares.num_rows, "fares")
    return pa.table({"n": [fares.num_rows], "total": [pc.sum(fares["fare"]).as_py()]})
"""


def project(root: Path, name: str, *, source: str, namespace: str,
            extra: dict[str, str] | None = None) -> Path:
    """A pipeline project folder: `fares.sql` (reads `source`) and `models.py`."""
    folder = root / name
    files = {
        "bauplan_project.yml": PROJECT_FILE.format(namespace=namespace),
        "models/fares.sql": SQL_MODEL.format(source=source),
        "models.py": PYTHON_MODELS,
        **(extra or {}),
    }
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder
