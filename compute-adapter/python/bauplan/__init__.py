"""floe's `bauplan` package: run Bauplan-style pipeline code on floe.

This is floe's own, independent implementation of the names a pipeline
file uses from `import bauplan`; it is installed in every floe worker
environment.  It holds no client and never talks to the network.

Declaring functions (see `bauplan._decorators`): the decorators `model`,
`expectation`, `python`, `resources` (and, recorded only, `extras`,
`pyspark`, `synthetic_model`) return the decorated function unchanged and
record their arguments in its `__bauplan__` attribute; `metadata_of(fn)`
returns a copy of it.

Declaring inputs (see `bauplan._inputs`): `Model(...)` and `Parameter(...)`,
as default values (legacy style) or inside `Annotated[...]` (typed style);
`inputs_of(fn)` and `output_schema_of(fn)` read them back.

Declaring schemas (see `bauplan._schema`): subclasses of `TableSchema` with
columns typed by `Int64`, `String`, `Float64 | None`, `Decimal128[38, 10]`...
and described by `TableField`.  `arrow_schema(S)` (also `S.to_arrow_schema()`)
builds the `pyarrow.Schema`; `schema_differences(table, S)` (also
`S.differences(table)`) lists how a table departs from it.

Checking data: `bauplan.standard_expectations`, imported on first use.

Importing this package imports only a few standard library modules: not
pyarrow, pandas or polars, which only the functions needing them import.
"""

from ._decorators import (
    ModelCacheStrategy,
    ModelMaterializationStrategy,
    expectation,
    extras,
    metadata_of,
    model,
    pyspark,
    python,
    resources,
    synthetic_model,
)
from ._inputs import Model, Parameter, inputs_of, output_schema_of
from ._schema import (
    Any,
    Binary,
    Bool,
    Boolean,
    ColumnLineage,
    ColumnReference,
    Date,
    Date32,
    Date64,
    Decimal,
    Decimal128,
    Decimal256,
    FieldType,
    Float16,
    Float32,
    Float64,
    Int8,
    Int16,
    Int32,
    Int64,
    LargeBinary,
    LargeString,
    SchemaColumn,
    String,
    TableField,
    TableSchema,
    Timestamp,
    TimestampMicro,
    TimestampMicroUTC,
    TimestampMilli,
    TimestampMilliUTC,
    TimestampNano,
    TimestampNanoUTC,
    TimestampSecond,
    TimestampSecondUTC,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    arrow_schema,
    schema_columns,
    schema_differences,
)

__version__ = "0.0.0+floe"


class Client:
    """Placeholder for Bauplan's API client, which floe does not provide.

    It exists so that files naming `bauplan.Client` (e.g. in annotations)
    still import; creating one raises `NotImplementedError`.
    """

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("floe's bauplan package has no API client: "
                                  "pipeline functions receive their inputs as arguments")


def __getattr__(name):
    """Import `bauplan.standard_expectations` (which needs pyarrow) on first use."""
    if name == "standard_expectations":
        import importlib
        return importlib.import_module(f"{__name__}.standard_expectations")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# `standard_expectations` is left out so that `from bauplan import *` does
# not import pyarrow.
__all__ = [
    "__version__", "Client",
    # decorators
    "model", "expectation", "python", "resources", "extras", "pyspark", "synthetic_model",
    "ModelMaterializationStrategy", "ModelCacheStrategy", "metadata_of",
    # inputs
    "Model", "Parameter", "inputs_of", "output_schema_of",
    # schemas
    "TableSchema", "TableField", "ColumnLineage", "ColumnReference", "SchemaColumn", "FieldType",
    "Any", "Bool", "Boolean", "Int8", "Int16", "Int32", "Int64",
    "UInt8", "UInt16", "UInt32", "UInt64", "Float16", "Float32", "Float64",
    "String", "LargeString", "Binary", "LargeBinary", "Date", "Date32", "Date64",
    "Timestamp", "TimestampSecond", "TimestampMilli", "TimestampMicro", "TimestampNano",
    "TimestampSecondUTC", "TimestampMilliUTC", "TimestampMicroUTC", "TimestampNanoUTC",
    "Decimal", "Decimal128", "Decimal256",
    "schema_columns", "arrow_schema", "schema_differences",
]
