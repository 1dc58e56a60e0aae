"""When each pinned release was uploaded, from the package index's JSON simple API.

floe builds a worker environment with uv's `--exclude-newer` at the newest pin's upload
time, so that the packages a pin does not bound (numpy under pandas 1.5.3) resolve as
they did when the pins were current. Run by the server's Python (standard library only):

    python -I release_dates.py INDEX_URL name==version ...

prints `{"name": "2023-01-19T03:15:42Z", ...}` (the earliest file of that release);
a release it cannot find is left out, and an index it cannot reach prints `{}`.
"""

import json
import re
import sys
import urllib.request

ACCEPT = "application/vnd.pypi.simple.v1+json"


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def canonical(version):
    """A version as PEP 440 compares it, for the common forms: lower case, no leading
    `v`, trailing `.0`s of the release dropped (`1.5` is `1.5.0`)."""
    version = version.strip().lower().lstrip("v")
    match = re.match(r"^([0-9]+(?:\.[0-9]+)*)(.*)$", version)
    if not match:
        return version
    release = match.group(1).split(".")
    while len(release) > 1 and int(release[-1]) == 0:
        release.pop()
    return ".".join(str(int(p)) for p in release) + match.group(2)


def file_version(filename, name):
    """The version a distribution file is of, or None when it is not `name`'s."""
    stem = re.sub(r"\.(whl|tar\.gz|zip|tar\.bz2|tgz|egg)$", "", filename)
    if filename.endswith(".whl") or filename.endswith(".egg"):
        parts = stem.split("-")
        owner, version = (parts[0], parts[1]) if len(parts) > 1 else (None, None)
    else:
        owner, _, version = stem.rpartition("-")
    if owner is None or normalize(owner) != normalize(name):
        return None
    return version


def uploaded(index, name, version, timeout=20):
    request = urllib.request.Request(f"{index.rstrip('/')}/{normalize(name)}/",
                                     headers={"Accept": ACCEPT})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        files = json.load(answer).get("files", [])
    wanted = canonical(version)
    times = [f["upload-time"] for f in files
             if f.get("upload-time")
             and canonical(file_version(f.get("filename", ""), name) or "") == wanted]
    return min(times) if times else None


def main(argv):
    index, pins = argv[1], argv[2:]
    found = {}
    for pin in pins:
        name, _, version = pin.partition("==")
        try:
            when = uploaded(index, name, version)
        except (OSError, ValueError):
            continue
        if when:
            found[name] = when
    json.dump(found, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
