"""Shared helpers of the client scenarios: floe's own API over urllib, and catalogs."""

import json
import os
import sys
import urllib.error
import urllib.request

URL = sys.argv[1].rstrip("/")


def api(method, path, body=None, headers=None):
    """Calls floe's own API; returns (status, parsed body or None)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        URL + path, method=method, data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, (json.loads(text) if text else None)


def ok(method, path, body=None, headers=None):
    status, reply = api(method, path, body, headers)
    assert 200 <= status < 300, (method, path, status, reply)
    return reply


# On a warehouse on S3 (issue 20) the scenarios run with the client's own S3 credentials
# when these are set, else with those floe vends; the endpoint, region and path style come
# from floe's loadTable either way.
S3_KEY = os.environ.get("FLOE_TEST_S3_KEY")
S3_SECRET = os.environ.get("FLOE_TEST_S3_SECRET")
# DuckDB's ATTACH options beyond the endpoint: with its own S3 secret it must not make a
# table-scoped one from loadTable's config (which holds no keys without vending).
DUCKDB_ATTACH = ", ACCESS_DELEGATION_MODE 'none'" if S3_KEY else ""
# Where the warehouse is: locations start with this.
SCHEME = os.environ.get("FLOE_TEST_SCHEME", "file://")


def catalog(name, warehouse):
    from pyiceberg.catalog import load_catalog

    own = {"s3.access-key-id": S3_KEY, "s3.secret-access-key": S3_SECRET} if S3_KEY else {}
    return load_catalog(
        name, type="rest", uri=URL + "/iceberg", warehouse=warehouse, auth={"type": "noop"},
        **own,
    )


def head(ref):
    return ok("GET", "/api/v1/refs/" + ref.replace("/", "%2F"))["head"]


def duckdb_connection():
    """A DuckDB connection with the iceberg, httpfs and avro extensions loaded from their
    pinned PyPI packages (nothing downloaded at run time); with the client's own S3 secret
    on a warehouse on S3."""

    import duckdb
    import duckdb_extension_avro as avro
    import duckdb_extension_httpfs as httpfs
    import duckdb_extension_iceberg as iceberg

    con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
    for module, name in ((httpfs, "httpfs"), (avro, "avro"), (iceberg, "iceberg")):
        path = f"{os.path.dirname(module.__file__)}/extensions/v{duckdb.__version__}/{name}.duckdb_extension"
        con.execute(f"LOAD '{path}'")
    if S3_KEY:
        endpoint = os.environ["FLOE_TEST_S3_ENDPOINT"].removeprefix("http://")
        con.execute(
            f"CREATE SECRET s3 (TYPE s3, KEY_ID '{S3_KEY}', SECRET '{S3_SECRET}', REGION 'us-east-1', "
            f"ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false)"
        )
    return con


def duckdb_meets_the_policy(con, branch, secret):
    """DuckDB with the Iceberg secret `secret` writes `branch` (whose s.t holds 2 rows) and
    is refused on the protected `main`."""
    import duckdb

    con.execute(f"ATTACH '{branch}' AS d (TYPE iceberg, ENDPOINT '{URL}/iceberg', SECRET {secret})")
    assert con.execute("SELECT count(*) FROM d.s.t").fetchone()[0] == 2
    con.execute("INSERT INTO d.s.t VALUES (3)")
    assert con.execute("SELECT count(*) FROM d.s.t").fetchone()[0] == 3
    con.execute(f"ATTACH 'main' AS m (TYPE iceberg, ENDPOINT '{URL}/iceberg', SECRET {secret})")
    try:
        con.execute("CREATE SCHEMA m.nope")
        raise AssertionError("DuckDB created a schema on the protected main")
    except duckdb.Error as e:
        assert "protected" in str(e) or "403" in str(e), e
