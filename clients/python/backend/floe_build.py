"""The build backend of floe-client: setuptools' own (`setuptools.build_meta`), with one
fallback so that `pip install --no-build-isolation ./clients/python` works offline.

setuptools before 70.1 builds wheels (and their metadata) only with the separate `wheel`
package, and the venvs Python 3.11 makes ship setuptools 65 without it. When neither is
there, the two wheel hooks do it themselves: setuptools still reads pyproject.toml's PEP 621
[project] (its `egg_info` command needs no `wheel`), its PKG-INFO and requirements become
the wheel's METADATA, and the wheel is a zip of the pure-Python package under `src/`
(PEP 427). Everything else is setuptools' unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401  (hooks passed through as they are)
    build_sdist,
    get_requires_for_build_sdist,
)

SOURCE_DIR = "src"
WHEEL_TAG = "py3-none-any"


def _builds_wheels() -> bool:
    """Whether setuptools can build a wheel here (natively, or through `wheel`)."""
    try:
        import setuptools.command.bdist_wheel  # noqa: F401  (setuptools >= 70.1)
        return True
    except ImportError:
        pass
    try:
        import wheel.bdist_wheel  # noqa: F401
        return True
    except ImportError:
        return False


def get_requires_for_build_wheel(config_settings: dict | None = None) -> list[str]:
    if _builds_wheels():
        return _setuptools.get_requires_for_build_wheel(config_settings)
    return []  # the fallback needs nothing but setuptools


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: dict | None = None
) -> str:
    if _builds_wheels():
        return _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)
    return _dist_info(Path(metadata_directory))


def _dist_info(out: Path) -> str:
    """Writes `<name>-<version>.dist-info/` (METADATA, top_level.txt) under `out` from
    what setuptools' `egg_info` makes of pyproject.toml; answers its folder name."""
    with tempfile.TemporaryDirectory() as egg_base:
        subprocess.run(
            [sys.executable, "-c", "from setuptools import setup; setup()", "egg_info",
             "--egg-base", egg_base],
            check=True, stdout=subprocess.DEVNULL,
        )
        egg = next(Path(egg_base).glob("*.egg-info"))
        pkg_info = (egg / "PKG-INFO").read_text(encoding="utf-8")
        requires_file = egg / "requires.txt"
        requires = [line.strip() for line in requires_file.read_text().splitlines()
                    if line.strip()] if requires_file.exists() else []
        if any(line.startswith("[") for line in requires):
            raise RuntimeError("floe_build's fallback takes plain dependencies only (no extras "
                               "or markers); install `wheel` to build this package")
        head, blank, description = pkg_info.partition("\n\n")
        metadata = head + "".join(f"\nRequires-Dist: {r}" for r in requires) + blank + description
        fields = dict(re.findall(r"^(Name|Version): (.+)$", head, re.MULTILINE))
        name = re.sub(r"[-_.]+", "_", fields["Name"])
        dist_info = out / f"{name}-{fields['Version']}.dist-info"
        dist_info.mkdir(parents=True, exist_ok=True)
        (dist_info / "METADATA").write_text(metadata, encoding="utf-8")
        top_level = egg / "top_level.txt"
        if top_level.exists():
            (dist_info / "top_level.txt").write_bytes(top_level.read_bytes())
    return dist_info.name


def build_wheel(
    wheel_directory: str,
    config_settings: dict | None = None,
    metadata_directory: str | None = None,
) -> str:
    if _builds_wheels():
        return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    with tempfile.TemporaryDirectory() as scratch:
        if metadata_directory is None:
            dist_info = Path(scratch) / _dist_info(Path(scratch))
        else:
            # PEP 517: the `.dist-info` folder an earlier prepare_metadata call made.
            dist_info = Path(metadata_directory)
        return _zip_wheel(Path(wheel_directory), dist_info)


def _zip_wheel(wheel_directory: Path, dist_info: Path) -> str:
    """Writes `<name>-<version>-py3-none-any.whl` from the files under `src/` and the
    metadata in `dist_info`; answers its file name."""
    name, version = dist_info.name[: -len(".dist-info")].rsplit("-", 1)
    wheel_name = f"{name}-{version}-{WHEEL_TAG}.whl"
    entries: list[tuple[str, bytes]] = []
    for root, folders, files in os.walk(SOURCE_DIR):
        folders[:] = sorted(f for f in folders
                            if f != "__pycache__" and not f.endswith(".egg-info"))
        for file in sorted(files):
            if not file.endswith((".pyc", ".pyo")):
                path = Path(root, file)
                entries.append((path.relative_to(SOURCE_DIR).as_posix(), path.read_bytes()))
    meta = dist_info.name
    for path in sorted(dist_info.rglob("*")):
        if path.is_file() and path.name not in ("RECORD", "WHEEL"):
            entries.append((f"{meta}/{path.relative_to(dist_info).as_posix()}",
                            path.read_bytes()))
    entries.append((f"{meta}/WHEEL", (
        "Wheel-Version: 1.0\nGenerator: floe_build\nRoot-Is-Purelib: true\n"
        f"Tag: {WHEEL_TAG}\n").encode()))
    record = []
    for arcname, data in entries:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arcname},sha256={digest},{len(data)}")
    record.append(f"{meta}/RECORD,,")
    entries.append((f"{meta}/RECORD", ("\n".join(record) + "\n").encode()))
    wheel_directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel_directory / wheel_name, "w", zipfile.ZIP_DEFLATED) as whl:
        for arcname, data in entries:
            whl.writestr(zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0)), data,
                         compress_type=zipfile.ZIP_DEFLATED)
    return wheel_name
