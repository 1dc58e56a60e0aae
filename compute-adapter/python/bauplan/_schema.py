"""Table schemas: column types, `TableSchema`, and the Arrow helpers.

A schema is a class deriving from `TableSchema` whose class annotations are
the columns of a table, in order::

    from typing import Annotated, Optional

    class Trips(bauplan.TableSchema):
        trip_id: bauplan.Int64                      # may not contain nulls
        fare: Optional[bauplan.Float64]             # may contain nulls
        city: bauplan.String | None                 # may contain nulls
        pickup: Annotated[
            bauplan.TimestampMicroUTC,
            bauplan.TableField(doc="when the trip started"),
        ]
        price: bauplan.Decimal128[38, 10] = bauplan.TableField(doc="in EUR")

A bare column type means the column holds no nulls; `Optional[X]` or
`X | None` means it may.  `TableField(nullable=...)` overrides both.
Schemas may derive from other schemas: inherited columns come first, and a
subclass may redeclare an inherited column to change its type.

Declaring a schema never needs pyarrow.  Only the functions that produce or
inspect Arrow objects (`arrow_schema`, `schema_differences` and the
`FieldType.arrow_type` class methods) import it, when they are called.
"""

import types
import typing

__all__ = [
    "FieldType", "Any", "Bool", "Boolean",
    "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
    "Float16", "Float32", "Float64",
    "String", "LargeString", "Binary", "LargeBinary",
    "Date", "Date32", "Date64",
    "Timestamp", "TimestampSecond", "TimestampMilli", "TimestampMicro", "TimestampNano",
    "TimestampSecondUTC", "TimestampMilliUTC", "TimestampMicroUTC", "TimestampNanoUTC",
    "Decimal", "Decimal128", "Decimal256",
    "TableField", "ColumnLineage", "ColumnReference", "TableSchema", "SchemaColumn",
    "schema_columns", "arrow_schema", "schema_differences",
]


# ------------------------------------------------------------ field types --

class FieldType:
    """Base class of the column types a `TableSchema` annotation may name.

    Column types are used as classes, never instantiated: `col: bauplan.Int64`.
    Each one knows the Arrow type it stands for (`arrow_type()`) and which
    Arrow types an actual column may have to satisfy it (`accepts()`).
    """

    @classmethod
    def arrow_type(cls):
        """The `pyarrow.DataType` this column type stands for."""
        raise TypeError(f"{cls.__name__} has no Arrow type")

    @classmethod
    def accepts(cls, data_type) -> bool:
        """Whether a column of Arrow type `data_type` satisfies this column type."""
        return data_type == cls.arrow_type()

    @classmethod
    def describe(cls) -> str:
        """A short human-readable name of the expected type, for messages."""
        return str(cls.arrow_type())


class _Simple(FieldType):
    """A column type that is exactly one parameterless Arrow type."""

    _factory = ""  # the name of the pyarrow function building the type

    @classmethod
    def arrow_type(cls):
        import pyarrow
        return getattr(pyarrow, cls._factory)()


class Any(FieldType):
    """Any Arrow type: the column must exist, but its type is not checked.

    Use it for types no other column type covers (lists, structs, maps...).
    It has no Arrow type of its own, so `arrow_schema()` refuses schemas
    holding an `Any` column.
    """

    @classmethod
    def arrow_type(cls):
        raise TypeError("bauplan.Any stands for any Arrow type and has no Arrow type of its own")

    @classmethod
    def accepts(cls, data_type) -> bool:
        return True

    @classmethod
    def describe(cls) -> str:
        return "any type"


class Bool(_Simple):
    """Boolean column: Arrow `bool`, Iceberg `boolean`."""
    _factory = "bool_"


Boolean = Bool


class Int8(_Simple):
    """Signed 8-bit integer column: Arrow `int8`."""
    _factory = "int8"


class Int16(_Simple):
    """Signed 16-bit integer column: Arrow `int16`."""
    _factory = "int16"


class Int32(_Simple):
    """Signed 32-bit integer column: Arrow `int32`, Iceberg `int`."""
    _factory = "int32"


class Int64(_Simple):
    """Signed 64-bit integer column: Arrow `int64`, Iceberg `long`."""
    _factory = "int64"


class UInt8(_Simple):
    """Unsigned 8-bit integer column: Arrow `uint8` (Iceberg has no unsigned types)."""
    _factory = "uint8"


class UInt16(_Simple):
    """Unsigned 16-bit integer column: Arrow `uint16` (Iceberg has no unsigned types)."""
    _factory = "uint16"


class UInt32(_Simple):
    """Unsigned 32-bit integer column: Arrow `uint32` (Iceberg has no unsigned types)."""
    _factory = "uint32"


class UInt64(_Simple):
    """Unsigned 64-bit integer column: Arrow `uint64` (Iceberg has no unsigned types)."""
    _factory = "uint64"


class Float16(_Simple):
    """Half-precision floating point column: Arrow `float16`."""
    _factory = "float16"


class Float32(_Simple):
    """Single-precision floating point column: Arrow `float32`, Iceberg `float`."""
    _factory = "float32"


class Float64(_Simple):
    """Double-precision floating point column: Arrow `float64`, Iceberg `double`."""
    _factory = "float64"


def _is_any(data_type, *predicates) -> bool:
    """Whether `data_type` passes one of the named `pyarrow.types` predicates."""
    import pyarrow.types
    return any(getattr(pyarrow.types, name, lambda _: False)(data_type) for name in predicates)


class String(_Simple):
    """UTF-8 string column: Arrow `string`, Iceberg `string`.

    Any Arrow string layout is accepted (`string`, `large_string`,
    `string_view`): they hold the same values, and Bauplan's documentation
    maps `String` to both of the first two.
    """
    _factory = "string"

    @classmethod
    def accepts(cls, data_type) -> bool:
        return _is_any(data_type, "is_string", "is_large_string", "is_string_view")


class LargeString(String):
    """UTF-8 string column built as Arrow `large_string` (64-bit offsets).

    Checks accept every string layout, exactly like `String`.
    """
    _factory = "large_string"


class Binary(_Simple):
    """Variable-length binary column: Arrow `binary`, Iceberg `binary`.

    Any Arrow binary layout is accepted (`binary`, `large_binary`,
    `binary_view`).
    """
    _factory = "binary"

    @classmethod
    def accepts(cls, data_type) -> bool:
        return _is_any(data_type, "is_binary", "is_large_binary", "is_binary_view")


class LargeBinary(Binary):
    """Binary column built as Arrow `large_binary`; checks accept every binary layout."""
    _factory = "large_binary"


class Date32(_Simple):
    """Date column counted in days: Arrow `date32`, Iceberg `date`."""
    _factory = "date32"


Date = Date32


class Date64(_Simple):
    """Date column counted in milliseconds: Arrow `date64` (no Iceberg equivalent)."""
    _factory = "date64"


# Spellings of the UTC time zone accepted on timestamp columns declared UTC.
_UTC_NAMES = {"utc", "etc/utc", "z", "+00:00", "00:00", "gmt", "etc/gmt"}


class _Timestamp(FieldType):
    """A timestamp column of one unit, either naive or in UTC."""

    _unit = "us"
    _utc = False

    @classmethod
    def arrow_type(cls):
        import pyarrow
        return pyarrow.timestamp(cls._unit, tz="UTC" if cls._utc else None)

    @classmethod
    def accepts(cls, data_type) -> bool:
        import pyarrow.types
        if not pyarrow.types.is_timestamp(data_type) or data_type.unit != cls._unit:
            return False
        if cls._utc:
            return (data_type.tz or "").lower() in _UTC_NAMES
        return data_type.tz is None


class TimestampSecond(_Timestamp):
    """Timestamp column without time zone, in seconds: Arrow `timestamp('s')`."""
    _unit = "s"


class TimestampMilli(_Timestamp):
    """Timestamp column without time zone, in milliseconds: Arrow `timestamp('ms')`."""
    _unit = "ms"


class TimestampMicro(_Timestamp):
    """Timestamp column without time zone, in microseconds: Arrow `timestamp('us')`, Iceberg `timestamp`."""
    _unit = "us"


Timestamp = TimestampMicro


class TimestampNano(_Timestamp):
    """Timestamp column without time zone, in nanoseconds: Arrow `timestamp('ns')`, Iceberg `timestamp_ns`."""
    _unit = "ns"


class TimestampSecondUTC(_Timestamp):
    """UTC timestamp column in seconds: Arrow `timestamp('s', tz='UTC')`."""
    _unit, _utc = "s", True


class TimestampMilliUTC(_Timestamp):
    """UTC timestamp column in milliseconds: Arrow `timestamp('ms', tz='UTC')`."""
    _unit, _utc = "ms", True


class TimestampMicroUTC(_Timestamp):
    """UTC timestamp column in microseconds: Arrow `timestamp('us', tz='UTC')`, Iceberg `timestamptz`.

    Values are instants; time zones spelled `UTC`, `Etc/UTC`, `Z` or
    `+00:00` all satisfy it.
    """
    _unit, _utc = "us", True


class TimestampNanoUTC(_Timestamp):
    """UTC timestamp column in nanoseconds: Arrow `timestamp('ns', tz='UTC')`, Iceberg `timestamptz_ns`."""
    _unit, _utc = "ns", True


class _DecimalBase(FieldType):
    """A fixed-point decimal column; precision and scale are given by subscript.

    `Decimal128[38, 10]` (or `Decimal128[Literal[38], Literal[10]]`) is a
    column of precision 38 and scale 10.  Subscripting returns a class, cached
    per (precision, scale), so it can be used in annotations, with `| None`,
    and compared with `is`.
    """

    _factory = ""
    _max_precision = 0
    precision = None
    scale = None
    _variants = None  # {(precision, scale): class}, one dict per decimal width

    def __class_getitem__(cls, params):
        if cls.precision is not None:
            raise TypeError(f"{cls.__name__} already has its precision and scale")
        if not isinstance(params, tuple) or len(params) != 2:
            raise TypeError(f"{cls.__name__} takes a precision and a scale, "
                            f"e.g. {cls.__name__}[38, 10]")
        precision, scale = (_literal_int(p) for p in params)
        variants = cls.__dict__.get("_variants")
        if variants is None:
            variants = {}
            cls._variants = variants
        if (precision, scale) not in variants:
            name = f"{cls.__name__}[{precision}, {scale}]"
            variants[precision, scale] = type(cls)(name, (cls,), {
                "__doc__": f"Decimal column of precision {precision} and scale {scale}.",
                "__module__": cls.__module__, "__qualname__": name,
                "precision": precision, "scale": scale,
            })
        return variants[precision, scale]

    @classmethod
    def arrow_type(cls):
        import pyarrow
        if cls.precision is None:
            raise TypeError(f"{cls.__name__} needs a precision and a scale, "
                            f"e.g. {cls.__name__}[38, 10]")
        if not isinstance(cls.precision, int) or not 1 <= cls.precision <= cls._max_precision:
            raise TypeError(f"the precision of {cls.__name__} must be an integer "
                            f"from 1 to {cls._max_precision}")
        if not isinstance(cls.scale, int):
            raise TypeError(f"the scale of {cls.__name__} must be an integer")
        return getattr(pyarrow, cls._factory)(cls.precision, cls.scale)


def _literal_int(param):
    """`38` from `38` or `Literal[38]`; anything else is returned unchanged."""
    if typing.get_origin(param) is typing.Literal and len(typing.get_args(param)) == 1:
        return typing.get_args(param)[0]
    return param


class Decimal128(_DecimalBase):
    """128-bit decimal column, `Decimal128[precision, scale]`.

    Arrow `decimal128`, Iceberg `decimal`; precision from 1 to 38.
    """
    _factory, _max_precision = "decimal128", 38


Decimal = Decimal128


class Decimal256(_DecimalBase):
    """256-bit decimal column, `Decimal256[precision, scale]`: Arrow `decimal256` (precision up to 76)."""
    _factory, _max_precision = "decimal256", 76


# ------------------------------------------------------- field metadata --

class TableField:
    """Metadata about one column of a `TableSchema`.

    Give it either in the annotation, `col: Annotated[Int64, TableField(...)]`,
    or as the class attribute's value, `col: Int64 = TableField(...)`.

    Arguments:
        doc: documentation of the column.
        title: a short title for the column.
        lineage: where the column's data comes from: another schema's column
            (`OtherSchema['col']`), a `ColumnLineage`, or a free string such
            as `"titanic['Age']"`.  Recorded, not checked.
        name: the column's name when it is not a valid Python identifier
            (defaults to the attribute name).
        nullable: whether the column may hold nulls; when given it overrides
            what the annotation says (`X` versus `Optional[X]`).
        **kwargs: any other metadata, recorded in `.kwargs`.
    """

    def __init__(self, doc=None, title=None, lineage=None, *, name=None, nullable=None, **kwargs):
        self.doc = doc
        self.title = title
        self.lineage = lineage
        self.name = name
        self.nullable = nullable
        self.kwargs = kwargs

    def __repr__(self):
        given = [f"{key}={value!r}" for key, value in vars(self).items()
                 if value is not None and key != "kwargs"]
        given += [f"{key}={value!r}" for key, value in self.kwargs.items()]
        return f"TableField({', '.join(given)})"


class ColumnLineage:
    """A reference to a column of a catalog table: `ColumnLineage('ns.table', 'col')`."""

    def __init__(self, table_name: str, col_name: str):
        self.table_name = table_name
        self.col_name = col_name

    def __repr__(self):
        return f"ColumnLineage({self.table_name!r}, {self.col_name!r})"

    def __eq__(self, other):
        if not isinstance(other, ColumnLineage):
            return NotImplemented
        return (self.table_name, self.col_name) == (other.table_name, other.col_name)

    def __hash__(self):
        return hash((self.table_name, self.col_name))


class ColumnReference:
    """A reference to a column of a schema class, made by `Schema['column']`."""

    def __init__(self, schema, column: str):
        self.schema = schema
        self.column = column

    def __repr__(self):
        return f"{self.schema.__name__}[{self.column!r}]"

    def __eq__(self, other):
        if not isinstance(other, ColumnReference):
            return NotImplemented
        return (self.schema, self.column) == (other.schema, other.column)

    def __hash__(self):
        return hash((self.schema, self.column))


# ---------------------------------------------------------------- schemas --

class TableSchema:
    """Base class of table schemas; see the module documentation.

    Subclasses declare columns as class annotations.  Besides the module
    functions (`schema_columns`, `arrow_schema`, `schema_differences`), a
    schema offers:

    * `Schema['col']`: a `ColumnReference` to one of its columns, to use as
      the `lineage` of another schema's `TableField`;
    * `Schema.to_arrow_schema()`: the same as `arrow_schema(Schema)`;
    * `Schema.differences(table)`: the same as `schema_differences(table, Schema)`.

    A column given a value named like one of these methods (e.g.
    `differences: Int64 = TableField()`) hides the method; the module
    functions always work.
    """

    def __class_getitem__(cls, column):
        if cls is TableSchema:
            raise TypeError("index a TableSchema subclass, e.g. MySchema['col']")
        if column not in _declared_names(cls):
            raise KeyError(f"{cls.__name__} has no column {column!r}")
        return ColumnReference(cls, column)

    @classmethod
    def to_arrow_schema(cls):
        """The `pyarrow.Schema` this class describes; see `arrow_schema`."""
        return arrow_schema(cls)

    @classmethod
    def differences(cls, table, *, allow_extra_columns=False):
        """How `table` differs from this schema; see `schema_differences`."""
        return schema_differences(table, cls, allow_extra_columns=allow_extra_columns)


class SchemaColumn(typing.NamedTuple):
    """One resolved column of a schema, as returned by `schema_columns`."""

    name: str                     # the column's name in the table
    attribute: str                # the class attribute declaring it
    field_type: type              # a FieldType subclass
    nullable: bool
    doc: typing.Optional[str] = None
    title: typing.Optional[str] = None
    lineage: typing.Any = None


def _schema_classes(schema):
    """The TableSchema classes `schema` is made of, most basic first."""
    if not (isinstance(schema, type) and issubclass(schema, TableSchema)) or schema is TableSchema:
        raise TypeError(f"expected a subclass of bauplan.TableSchema, got {schema!r}")
    return [klass for klass in reversed(schema.__mro__)
            if issubclass(klass, TableSchema) and klass is not TableSchema]


def _declared_names(schema):
    """Attribute names annotated in `schema` and its schema bases, in order."""
    names = {}
    for klass in _schema_classes(schema):
        names.update(dict.fromkeys(vars(klass).get("__annotations__", {})))
    return list(names)


def _split_annotation(annotation, where):
    """Return (field type, nullable or None, [TableField]) for a column annotation."""
    nullable, fields = None, []
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation, *metadata = typing.get_args(annotation)
            fields += [item for item in metadata if isinstance(item, TableField)]
        elif origin in (typing.Union, types.UnionType):
            members = typing.get_args(annotation)
            others = [member for member in members if member is not type(None)]
            if len(others) != 1:
                raise TypeError(f"{where}: a column has one type, optionally `| None`, "
                                f"not {annotation!r}")
            nullable, annotation = True, others[0]
        else:
            break
    if not (isinstance(annotation, type) and issubclass(annotation, FieldType)) \
            or annotation in (FieldType, _Simple, _Timestamp, _DecimalBase):
        raise TypeError(f"{where}: {annotation!r} is not a bauplan column type "
                        "(e.g. bauplan.Int64, bauplan.String, bauplan.Float64 | None)")
    return annotation, nullable, fields


def schema_columns(schema) -> typing.List[SchemaColumn]:
    """The columns `schema` declares, inherited ones first, as `SchemaColumn`s.

    Resolves string annotations (e.g. under `from __future__ import
    annotations`) in the module defining each class.  Raises `TypeError`
    when an annotation is not a column type or cannot be resolved, and when
    two attributes name the same column.  Does not import pyarrow.
    """
    classes = _schema_classes(schema)
    try:
        hints = typing.get_type_hints(schema, include_extras=True)
    except Exception as exc:  # NameError, SyntaxError... from user annotations
        raise TypeError(f"cannot resolve the annotations of {schema.__name__}: {exc}") from exc
    columns, seen = [], {}
    for attribute in _declared_names(schema):
        annotation = hints[attribute]
        if typing.get_origin(annotation) is typing.ClassVar or annotation is typing.ClassVar:
            continue
        where = f"column {attribute!r} of {schema.__name__}"
        field_type, nullable, fields = _split_annotation(annotation, where)
        # The value given to the attribute by the most derived class declaring it.
        owner = next(k for k in reversed(classes) if attribute in vars(k).get("__annotations__", {}))
        default = vars(owner).get(attribute)
        if isinstance(default, TableField):
            fields.append(default)
        if _last(fields, "nullable") is not None:
            nullable = bool(_last(fields, "nullable"))
        name = _last(fields, "name") or attribute
        if name in seen:
            raise TypeError(f"{where}: the column {name!r} is already declared by {seen[name]!r}")
        seen[name] = attribute
        columns.append(SchemaColumn(name, attribute, field_type, bool(nullable), _last(fields, "doc"),
                                    _last(fields, "title"), _last(fields, "lineage")))
    return columns


def _last(fields, key):
    """The last value of attribute `key` that one of the TableFields gives, or None."""
    values = [getattr(field, key) for field in fields if getattr(field, key) is not None]
    return values[-1] if values else None


def arrow_schema(schema):
    """The `pyarrow.Schema` that the TableSchema subclass `schema` describes.

    Fields come in declaration order (inherited columns first), with the
    Arrow type of each column type and `nullable` set as declared.  Raises
    `TypeError` for an invalid schema or for a column typed `bauplan.Any`,
    which has no Arrow type.  Imports pyarrow.
    """
    import pyarrow
    fields = []
    for column in schema_columns(schema):
        try:
            data_type = column.field_type.arrow_type()
        except TypeError as exc:
            raise TypeError(f"column {column.name!r} of {schema.__name__}: {exc}") from exc
        fields.append(pyarrow.field(column.name, data_type, nullable=column.nullable))
    return pyarrow.schema(fields)


def schema_differences(table, schema, *, allow_extra_columns=False) -> typing.List[str]:
    """Compare a table with a TableSchema subclass; return the differences.

    `table` is a `pyarrow.Table`, a `pyarrow.RecordBatch`, or anything
    `pyarrow.table()` accepts.  The result is a list of human-readable
    sentences, empty when the table conforms.  It reports, in the schema's
    column order and then the table's:

    * a declared column missing from the table;
    * a column present more than once in the table;
    * a column whose Arrow type the declared column type does not accept
      (see each type's `accepts`; e.g. `String` takes every string layout);
    * a column declared without `| None` that holds nulls (the table's own
      `nullable` flags are ignored: only actual values count);
    * a table column the schema does not declare, unless
      `allow_extra_columns` is true.

    Column order is not compared.  Raises `TypeError` when the schema
    itself is invalid (see `schema_columns`, and e.g. `Decimal128` without
    precision and scale).  Imports pyarrow.
    """
    import pyarrow
    if isinstance(table, pyarrow.RecordBatch):
        table = pyarrow.Table.from_batches([table])
    elif not isinstance(table, pyarrow.Table):
        table = pyarrow.table(table)
    names = table.column_names
    problems = []
    declared = schema_columns(schema)
    expected = {column.name: _describe(column, schema) for column in declared}
    for column in declared:
        count = names.count(column.name)
        if count == 0:
            problems.append(f"missing column {column.name!r} (expected {expected[column.name]})")
            continue
        if count > 1:
            problems.append(f"column {column.name!r} appears {count} times")
            continue
        actual = table.schema.field(column.name).type
        if not column.field_type.accepts(actual):
            problems.append(f"column {column.name!r} has type {actual}, "
                            f"expected {expected[column.name]}")
        nulls = table.column(column.name).null_count
        if nulls and not column.nullable:
            problems.append(f"column {column.name!r} is not nullable but holds "
                            f"{nulls} null value{'s' if nulls > 1 else ''}")
    if not allow_extra_columns:
        known = {column.name for column in declared}
        for name in dict.fromkeys(names):
            if name not in known:
                problems.append(f"extra column {name!r} ({table.schema.field(names.index(name)).type}) "
                                f"is not declared in {schema.__name__}")
    return problems


def _describe(column, schema) -> str:
    """The expected type of a column, for messages; TypeError if it has none."""
    try:
        return column.field_type.describe()
    except TypeError as exc:
        raise TypeError(f"column {column.name!r} of {schema.__name__}: {exc}") from exc
