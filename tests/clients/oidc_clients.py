"""PyIceberg 0.12 and DuckDB 1.5.5 get their tokens from an OIDC issuer (issue 19): the
client-credentials grant at the issuer's token endpoint (argv[2]), PyIceberg with
`credential=` and `oauth2-server-uri`, DuckDB with CLIENT_ID/CLIENT_SECRET/OAUTH2_SERVER_URI.
The client `etl` is in the group `engineers`, which the policy maps to `dev`: both write
`dev/etl` and both are refused on the protected `main`."""

import sys

import pyarrow as pa
from pyiceberg.catalog import load_catalog
from pyiceberg.exceptions import ForbiddenError

from floe_client import URL, duckdb_connection, duckdb_meets_the_policy

TOKEN_URI = sys.argv[2]


def catalog(warehouse):
    return load_catalog(
        warehouse,
        type="rest",
        uri=URL + "/iceberg",
        warehouse=warehouse,
        credential="etl:etl-secret",
        scope="catalog",
        **{"oauth2-server-uri": TOKEN_URI},
    )


dev = catalog("dev/etl")
dev.create_namespace("s")
table = dev.create_table("s.t", schema=pa.schema([pa.field("id", pa.int64())]))
table.append(pa.table({"id": pa.array([1, 2], pa.int64())}))
assert dev.load_table("s.t").scan().to_arrow().num_rows == 2

try:
    catalog("main").create_namespace("nope")
    raise AssertionError("an engineer created a namespace on the protected main")
except ForbiddenError as e:
    assert "main is protected" in str(e), e

con = duckdb_connection()
con.execute(
    f"CREATE SECRET idp (TYPE iceberg, CLIENT_ID 'etl', CLIENT_SECRET 'etl-secret', "
    f"OAUTH2_SERVER_URI '{TOKEN_URI}', OAUTH2_SCOPE 'catalog')"
)
duckdb_meets_the_policy(con, "dev/etl", "idp")
print("ok")
