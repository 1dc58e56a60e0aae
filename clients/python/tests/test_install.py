"""The package installs with pip, offline, into a fresh venv (`python -m venv
--system-site-packages`, `pip install --no-build-isolation --no-deps`) and imports from
there: its modules, its `py.typed` marker and its metadata."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from support import PACKAGE_ROOT

# pip builds in the source folder it is given; a copy keeps build files out of the tree.
IGNORED = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist", "tests")


class Install(unittest.TestCase):
    def test_pip_installs_the_package_into_a_fresh_venv(self) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            source = root / "floe-client"
            shutil.copytree(PACKAGE_ROOT, source, ignore=IGNORED)
            venv = root / "venv"
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                           check=True, capture_output=True, timeout=300)
            python = venv / "bin" / "python"
            install = subprocess.run(
                [str(python), "-m", "pip", "install", "--no-build-isolation", "--no-deps",
                 "--no-index", "--no-cache-dir", "--disable-pip-version-check", str(source)],
                capture_output=True, text=True, timeout=300,
            )
            self.assertEqual(install.returncode, 0, f"{install.stdout}\n{install.stderr}")
            probe = subprocess.run(
                [str(python), "-I", "-c",
                 "import importlib.metadata as m, pathlib, floe, floe.bauplan\n"
                 "print(floe.__version__, m.version('floe-client'))\n"
                 "print(pathlib.Path(floe.__file__).parent)\n"
                 "print((pathlib.Path(floe.__file__).parent / 'py.typed').is_file())\n"
                 "print(floe.bauplan.Client.__name__, floe.Client.__name__)\n"],
                capture_output=True, text=True, timeout=60, cwd=scratch,
            )
            self.assertEqual(probe.returncode, 0, probe.stderr)
            version, where, typed, names = probe.stdout.splitlines()
            self.assertEqual(version, "0.1.0 0.1.0")
            self.assertTrue(Path(where).is_relative_to(venv), where)
            self.assertEqual(typed, "True")
            self.assertEqual(names, "Client Client")
            self.assertEqual(sorted(p.name for p in source.iterdir()),
                             sorted(p.name for p in PACKAGE_ROOT.iterdir()
                                    if p.name not in ("tests", "__pycache__")),
                             "the build wrote nothing into the source folder")


if __name__ == "__main__":
    unittest.main()
