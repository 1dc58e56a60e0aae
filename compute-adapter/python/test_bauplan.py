"""Tests of floe's `bauplan` package.

Run from this directory with `python -B -m unittest -q test_bauplan`.
Tests that need pyarrow are skipped when it is not installed.
"""

import functools
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import unittest
from typing import Annotated, ClassVar, Literal, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bauplan  # noqa: E402  (after the path set-up)

HAVE_PYARROW = importlib.util.find_spec("pyarrow") is not None
needs_pyarrow = unittest.skipUnless(HAVE_PYARROW, "pyarrow is not installed in this interpreter; "
                                                  "run with a venv holding pyarrow to include these tests")
if HAVE_PYARROW:
    import pyarrow as pa
    from bauplan import standard_expectations as se


def run_python(code):
    """Run `code` in a fresh interpreter that can import this directory's bauplan."""
    prelude = f"import sys; sys.path.insert(0, {HERE!r})\n"
    done = subprocess.run([sys.executable, "-B", "-c", prelude + code], cwd=HERE,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"subprocess failed:\n{done.stderr}")
    return done.stdout


# Decorator applications and the entry each one should record.
MODEL = (bauplan.model(name="out", materialization_strategy="REPLACE", partitioned_by=["day"],
                       cache_strategy="NONE", internet_access=True, overwrite_filter="day > 1",
                       columns=["a"]),
         "model", {"name": "out", "columns": ["a"], "partitioned_by": ["day"],
                   "materialization_strategy": "REPLACE", "cache_strategy": "NONE",
                   "internet_access": True, "overwrite_filter": "day > 1", "kwargs": {}})
EXPECTATION = (bauplan.expectation(), "expectation", {"kwargs": {}})
PYTHON = (bauplan.python("3.11", pip={"polars": "1.37"}),
          "python", {"version": "3.11", "pip": {"polars": "1.37"}, "kwargs": {}})
RESOURCES = (bauplan.resources(cpus=2, memory="4G", timeout=60),
             "resources", {"cpus": 2, "memory": "4G", "memory_swap": None, "timeout": 60,
                           "kwargs": {}})


def sample(data=bauplan.Model("t"), rate=bauplan.Parameter("rate")):
    return (data, rate)


class DecoratorTest(unittest.TestCase):

    def test_every_order_returns_the_function_and_records_everything(self):
        for node in (MODEL, EXPECTATION):
            for order in itertools.permutations([node, PYTHON, RESOURCES]):
                with self.subTest(order=[kind for _, kind, _ in order]):
                    def fn(data=bauplan.Model("t")):
                        return data
                    decorated = fn
                    for decorator, _, _ in reversed(order):  # innermost first
                        decorated = decorator(decorated)
                    self.assertIs(decorated, fn)
                    self.assertEqual(fn.__bauplan__, {kind: values for _, kind, values in order})
                    self.assertEqual(fn(data=3), 3)  # still an ordinary function

    def test_decorator_syntax(self):
        @bauplan.python("3.12")
        @bauplan.model("named")
        def fn(x=bauplan.Model("t")):
            return x * 2

        self.assertEqual(fn.__name__, "fn")
        self.assertEqual(fn(x=4), 8)
        self.assertEqual(fn.__bauplan__["model"]["name"], "named")
        self.assertEqual(fn.__bauplan__["python"], {"version": "3.12", "pip": None, "kwargs": {}})

    def test_bare_use_records_defaults(self):
        def fn():
            return 1

        for decorator, kind, expected in [
            (bauplan.model, "model", {"name": None, "columns": None, "partitioned_by": None,
                                      "materialization_strategy": None, "cache_strategy": None,
                                      "internet_access": None, "overwrite_filter": None,
                                      "kwargs": {}}),
            (bauplan.expectation, "expectation", {"kwargs": {}}),
            (bauplan.python, "python", {"version": None, "pip": None, "kwargs": {}}),
            (bauplan.resources, "resources", {"cpus": None, "memory": None, "memory_swap": None,
                                              "timeout": None, "kwargs": {}}),
            (bauplan.extras, "extras", {"names": []}),
            (bauplan.pyspark, "pyspark", {"version": None, "conf": None, "kwargs": {}}),
            (bauplan.synthetic_model, "synthetic_model", {"name": None, "columns": None,
                                                          "kwargs": {}}),
        ]:
            with self.subTest(kind=kind):
                self.assertIs(decorator(fn), fn)
                self.assertEqual(fn.__bauplan__[kind], expected)
        self.assertEqual(len(fn.__bauplan__), 7)

    def test_empty_parentheses_equal_bare_use(self):
        def bare():
            pass

        def called():
            pass

        bauplan.model(bare)
        bauplan.model()(called)
        self.assertEqual(bare.__bauplan__, called.__bauplan__)

    def test_unknown_keyword_arguments_are_recorded(self):
        @bauplan.model(name="m", future_option=1)
        @bauplan.python("3.11", index_url="https://example.invalid")
        @bauplan.resources(memory_swap="1G", gpus=1)
        @bauplan.expectation(severity="warn")
        def fn():
            pass

        self.assertEqual(fn.__bauplan__["model"]["kwargs"], {"future_option": 1})
        self.assertEqual(fn.__bauplan__["python"]["kwargs"], {"index_url": "https://example.invalid"})
        self.assertEqual(fn.__bauplan__["resources"]["memory_swap"], "1G")
        self.assertEqual(fn.__bauplan__["resources"]["kwargs"], {"gpus": 1})
        self.assertEqual(fn.__bauplan__["expectation"], {"kwargs": {"severity": "warn"}})

    def test_extras_pyspark_and_synthetic_model(self):
        @bauplan.extras("ai", "prefect")
        @bauplan.pyspark("3.5", conf={"spark.x": "1"})
        @bauplan.synthetic_model("syn", ["a", "b"])
        def fn():
            pass

        self.assertEqual(fn.__bauplan__["extras"], {"names": ["ai", "prefect"]})
        self.assertEqual(fn.__bauplan__["pyspark"], {"version": "3.5", "conf": {"spark.x": "1"},
                                                     "kwargs": {}})
        self.assertEqual(fn.__bauplan__["synthetic_model"], {"name": "syn", "columns": ["a", "b"],
                                                             "kwargs": {}})

    def test_same_decorator_twice_keeps_the_outermost(self):
        @bauplan.python("3.12")
        @bauplan.python("3.10")
        def fn():
            pass

        self.assertEqual(fn.__bauplan__["python"]["version"], "3.12")

    def test_a_wrapper_does_not_change_the_wrapped_function(self):
        @bauplan.python("3.11")
        def inner():
            pass

        @functools.wraps(inner)  # copies __bauplan__ by reference
        def outer():
            return inner()

        bauplan.model("m")(outer)
        self.assertEqual(set(outer.__bauplan__), {"python", "model"})
        self.assertEqual(set(inner.__bauplan__), {"python"})

    def test_metadata_of_returns_a_copy(self):
        @bauplan.model("m")
        def fn():
            pass

        copy = bauplan.metadata_of(fn)
        copy["model"]["name"] = "changed"
        copy["python"] = {}
        self.assertEqual(fn.__bauplan__["model"]["name"], "m")
        self.assertNotIn("python", fn.__bauplan__)
        self.assertEqual(bauplan.metadata_of(len), {})

    def test_misuse_is_reported(self):
        with self.assertRaises(TypeError):
            bauplan.model("m")("not a function")
        with self.assertRaises(TypeError):
            bauplan.expectation("positional")
        with self.assertRaises(TypeError):
            bauplan.python("3.11")(len)  # a builtin takes no attributes

    def test_strategy_aliases(self):
        self.assertEqual(bauplan.ModelMaterializationStrategy.__args__,
                         ("NONE", "REPLACE", "APPEND", "OVERWRITE_PARTITIONS"))
        self.assertEqual(bauplan.ModelCacheStrategy.__args__, ("NONE", "DEFAULT"))


class Narrow(bauplan.TableSchema):
    """A projection used by the input tests."""
    a: bauplan.Int64


class InputTest(unittest.TestCase):

    def test_legacy_model_records_its_arguments(self):
        model = bauplan.Model("ns.t", columns=["a", "b"], filter="a > 1", ref="main",
                              connector="dremio", unknown=1)
        self.assertEqual((model.name, model.columns, model.filter, model.ref, model.connector),
                         ("ns.t", ["a", "b"], "a > 1", "main", "dremio"))
        self.assertIsNone(model.projection_schema)
        self.assertEqual(model.kwargs, {"unknown": 1})
        self.assertEqual(repr(model), "Model('ns.t', columns=['a', 'b'], filter='a > 1', "
                                      "ref='main', connector='dremio', unknown=1)")

    def test_typed_model(self):
        by_keyword = bauplan.Model(name="t", projection_schema=Narrow, filter="a > 0")
        by_position = bauplan.Model("t", Narrow, "a > 0")
        self.assertEqual(by_keyword, by_position)
        self.assertIs(by_position.projection_schema, Narrow)
        self.assertIsNone(by_position.columns)
        self.assertNotEqual(by_keyword, bauplan.Model("t"))

    def test_parameter(self):
        self.assertEqual(bauplan.Parameter("rate").param_name, "rate")
        self.assertEqual(bauplan.Parameter(name="rate"), bauplan.Parameter("rate"))
        self.assertEqual(bauplan.Parameter("rate").name, "rate")
        self.assertEqual(repr(bauplan.Parameter("rate")), "Parameter('rate')")
        with self.assertRaises(TypeError):
            bauplan.Parameter()

    def test_inputs_of_legacy_function(self):
        self.assertEqual(bauplan.inputs_of(sample),
                         {"data": bauplan.Model("t"), "rate": bauplan.Parameter("rate")})
        self.assertIsNone(bauplan.output_schema_of(sample))

    def test_inputs_of_typed_function(self):
        # "pyarrow.Table" stays an unresolvable string without pyarrow: the
        # Annotated metadata must still be found.
        def typed(data: Annotated["pyarrow.Table", bauplan.Model("t", projection_schema=Narrow)],
                  rate: Annotated[float, bauplan.Parameter("rate")],
                  plain=1) -> Annotated["pyarrow.Table", Narrow]:
            return data

        self.assertEqual(bauplan.inputs_of(typed),
                         {"data": bauplan.Model("t", projection_schema=Narrow),
                          "rate": bauplan.Parameter("rate")})
        self.assertIs(bauplan.output_schema_of(typed), Narrow)

    def test_client_is_a_placeholder(self):
        with self.assertRaises(NotImplementedError):
            bauplan.Client()


class ImportTest(unittest.TestCase):

    def test_import_loads_no_heavy_or_network_module(self):
        out = run_python(
            "import json\n"
            "import bauplan\n"
            "from bauplan import *\n"
            "print(json.dumps(sorted(m for m in ('pyarrow', 'pandas', 'polars', 'numpy', 'socket',"
            " 'bauplan.standard_expectations') if m in sys.modules)))\n")
        self.assertEqual(json.loads(out), [])

    def test_package_works_where_pyarrow_cannot_be_imported(self):
        out = run_python(
            "import importlib.abc\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('pyarrow', 'pandas', 'polars'):\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from typing import Annotated\n"
            "import bauplan\n"
            "class S(bauplan.TableSchema):\n"
            "    a: bauplan.Int64\n"
            "    b: Annotated[bauplan.String | None, bauplan.TableField(doc='d')]\n"
            "@bauplan.model()\n"
            "@bauplan.python('3.11')\n"
            "def m(data: Annotated['pyarrow.Table', bauplan.Model('t', projection_schema=S)]):\n"
            "    return data\n"
            "print([c.name for c in bauplan.schema_columns(S)], sorted(m.__bauplan__),\n"
            "      sorted(bauplan.inputs_of(m)))\n")
        self.assertEqual(out.strip(), "['a', 'b'] ['model', 'python'] ['data']")

    @needs_pyarrow
    def test_standard_expectations_import_no_dataframe_library(self):
        out = run_python(
            "import json\n"
            "import bauplan\n"
            "bauplan.standard_expectations.expect_column_no_nulls({'a': [1]}, 'a')\n"
            "print(json.dumps(sorted(m for m in ('pandas', 'polars') if m in sys.modules)))\n")
        self.assertEqual(json.loads(out), [])


# ---------------------------------------------------------------- schemas --

class Base(bauplan.TableSchema):
    """Columns shared by the schemas below."""
    id: bauplan.Int64
    label: Optional[bauplan.String]


class Derived(Base):
    """Adds columns, with every way of saying nullable and of attaching metadata."""
    score: bauplan.Float64 | None
    amount: Annotated[bauplan.Decimal128[10, 2], bauplan.TableField(doc="money", title="Amount")]
    when: Annotated[bauplan.TimestampMicroUTC | None, bauplan.TableField(lineage=Base["id"])]
    forced: Annotated[bauplan.Int32 | None, bauplan.TableField(nullable=False)]
    allowed: bauplan.Int32 = bauplan.TableField(nullable=True, doc="default-value metadata")
    renamed: Annotated[bauplan.Bool, bauplan.TableField(name="is ok")]
    version: ClassVar[int] = 3  # not a column


class Redeclared(Derived):
    """Changes the type of an inherited column, which keeps its position."""
    label: bauplan.LargeString


class StringAnnotations(bauplan.TableSchema):
    """Annotations written as strings, as under `from __future__ import annotations`."""
    a: "bauplan.Int64"
    b: "Optional[bauplan.Date32]"


EVERY_TYPE = [  # (column type, arrow type) pairs, built when pyarrow is there
    ("Bool", "bool_()"), ("Boolean", "bool_()"),
    ("Int8", "int8()"), ("Int16", "int16()"), ("Int32", "int32()"), ("Int64", "int64()"),
    ("UInt8", "uint8()"), ("UInt16", "uint16()"), ("UInt32", "uint32()"), ("UInt64", "uint64()"),
    ("Float16", "float16()"), ("Float32", "float32()"), ("Float64", "float64()"),
    ("String", "string()"), ("LargeString", "large_string()"),
    ("Binary", "binary()"), ("LargeBinary", "large_binary()"),
    ("Date", "date32()"), ("Date32", "date32()"), ("Date64", "date64()"),
    ("Timestamp", "timestamp('us')"), ("TimestampSecond", "timestamp('s')"),
    ("TimestampMilli", "timestamp('ms')"), ("TimestampMicro", "timestamp('us')"),
    ("TimestampNano", "timestamp('ns')"),
    ("TimestampSecondUTC", "timestamp('s', tz='UTC')"),
    ("TimestampMilliUTC", "timestamp('ms', tz='UTC')"),
    ("TimestampMicroUTC", "timestamp('us', tz='UTC')"),
    ("TimestampNanoUTC", "timestamp('ns', tz='UTC')"),
]


class SchemaColumnsTest(unittest.TestCase):

    def test_columns_inheritance_nullability_and_metadata(self):
        columns = bauplan.schema_columns(Derived)
        self.assertEqual([(c.name, c.attribute, c.field_type, c.nullable) for c in columns], [
            ("id", "id", bauplan.Int64, False),
            ("label", "label", bauplan.String, True),
            ("score", "score", bauplan.Float64, True),
            ("amount", "amount", bauplan.Decimal128[10, 2], False),
            ("when", "when", bauplan.TimestampMicroUTC, True),
            ("forced", "forced", bauplan.Int32, False),
            ("allowed", "allowed", bauplan.Int32, True),
            ("is ok", "renamed", bauplan.Bool, False),
        ])
        by_name = {c.name: c for c in columns}
        self.assertEqual((by_name["amount"].doc, by_name["amount"].title), ("money", "Amount"))
        self.assertEqual(by_name["when"].lineage, bauplan.ColumnReference(Base, "id"))
        self.assertEqual(by_name["allowed"].doc, "default-value metadata")

    def test_redeclared_column_keeps_its_place(self):
        columns = bauplan.schema_columns(Redeclared)
        self.assertEqual(columns[1].name, "label")
        self.assertIs(columns[1].field_type, bauplan.LargeString)
        self.assertFalse(columns[1].nullable)
        self.assertEqual(len(columns), 8)

    def test_string_annotations_are_resolved(self):
        self.assertEqual([(c.name, c.field_type, c.nullable)
                          for c in bauplan.schema_columns(StringAnnotations)],
                         [("a", bauplan.Int64, False), ("b", bauplan.Date32, True)])

    def test_column_references(self):
        self.assertEqual(Derived["id"], bauplan.ColumnReference(Derived, "id"))
        self.assertEqual(repr(Base["label"]), "Base['label']")
        with self.assertRaises(KeyError):
            Base["missing"]
        with self.assertRaises(TypeError):
            bauplan.TableSchema["id"]
        lineage = bauplan.ColumnLineage("ns.table", "col")
        self.assertEqual(lineage, bauplan.ColumnLineage("ns.table", "col"))

    def test_decimal_subscript(self):
        self.assertIs(bauplan.Decimal128[38, 10], bauplan.Decimal128[Literal[38], Literal[10]])
        self.assertIs(bauplan.Decimal, bauplan.Decimal128)
        self.assertIsNot(bauplan.Decimal128[38, 10], bauplan.Decimal256[38, 10])
        self.assertEqual((bauplan.Decimal256[50, 3].precision, bauplan.Decimal256[50, 3].scale), (50, 3))
        self.assertTrue(issubclass(bauplan.Decimal128[5, 1], bauplan.Decimal128))
        with self.assertRaises(TypeError):
            bauplan.Decimal128[38]
        with self.assertRaises(TypeError):
            bauplan.Decimal128[38, 10][1, 2]

    def test_aliases(self):
        self.assertIs(bauplan.Boolean, bauplan.Bool)
        self.assertIs(bauplan.Date, bauplan.Date32)
        self.assertIs(bauplan.Timestamp, bauplan.TimestampMicro)

    def test_invalid_schemas(self):
        class NotAType(bauplan.TableSchema):
            a: int

        class TwoTypes(bauplan.TableSchema):
            a: bauplan.Int64 | bauplan.String

        class SameName(bauplan.TableSchema):
            a: bauplan.Int64
            b: Annotated[bauplan.Int64, bauplan.TableField(name="a")]

        class Unresolvable(bauplan.TableSchema):
            a: "NoSuchName"  # noqa: F821

        for schema in (NotAType, TwoTypes, SameName, Unresolvable):
            with self.subTest(schema=schema.__name__), self.assertRaises(TypeError):
                bauplan.schema_columns(schema)
        for not_a_schema in (bauplan.TableSchema, int, "S"):
            with self.subTest(schema=not_a_schema), self.assertRaises(TypeError):
                bauplan.schema_columns(not_a_schema)

    def test_empty_schema(self):
        class Empty(bauplan.TableSchema):
            """No columns."""

        self.assertEqual(bauplan.schema_columns(Empty), [])


@needs_pyarrow
class ArrowSchemaTest(unittest.TestCase):

    def test_every_type(self):
        for name, arrow in EVERY_TYPE:
            with self.subTest(name=name):
                field_type = getattr(bauplan, name)
                expected = eval(f"pa.{arrow}")
                self.assertEqual(field_type.arrow_type(), expected)
                self.assertTrue(field_type.accepts(expected))
        self.assertEqual(bauplan.Decimal128[38, 10].arrow_type(), pa.decimal128(38, 10))
        self.assertEqual(bauplan.Decimal256[60, 5].arrow_type(), pa.decimal256(60, 5))

    def test_arrow_schema_with_inheritance_and_nullability(self):
        expected = pa.schema([
            pa.field("id", pa.int64(), nullable=False),
            pa.field("label", pa.string(), nullable=True),
            pa.field("score", pa.float64(), nullable=True),
            pa.field("amount", pa.decimal128(10, 2), nullable=False),
            pa.field("when", pa.timestamp("us", tz="UTC"), nullable=True),
            pa.field("forced", pa.int32(), nullable=False),
            pa.field("allowed", pa.int32(), nullable=True),
            pa.field("is ok", pa.bool_(), nullable=False),
        ])
        self.assertEqual(bauplan.arrow_schema(Derived), expected)
        self.assertEqual(Derived.to_arrow_schema(), expected)
        self.assertEqual(Redeclared.to_arrow_schema().field("label"),
                         pa.field("label", pa.large_string(), nullable=False))

    def test_types_without_arrow_equivalent(self):
        class WithAny(bauplan.TableSchema):
            a: bauplan.Any

        class BareDecimal(bauplan.TableSchema):
            a: bauplan.Decimal128

        class TooPrecise(bauplan.TableSchema):
            a: bauplan.Decimal128[39, 0]

        for schema in (WithAny, BareDecimal, TooPrecise):
            with self.subTest(schema=schema.__name__), self.assertRaises(TypeError):
                bauplan.arrow_schema(schema)
        # Checking a table against an invalid schema is an error, not a difference.
        for schema in (BareDecimal, TooPrecise):
            with self.subTest(schema=schema.__name__), self.assertRaises(TypeError):
                schema.differences({"a": [1]})
        self.assertEqual(WithAny.differences({"a": [1]}), [])


@needs_pyarrow
class DifferencesTest(unittest.TestCase):

    def conforming(self):
        return pa.table({
            "id": [1, 2], "label": ["a", None], "score": [None, 1.5],
            "amount": pa.array([1, 2], pa.decimal128(10, 2)),
            "when": pa.array([1, None], pa.timestamp("us", tz="UTC")),
            "forced": pa.array([1, 2], pa.int32()), "allowed": pa.array([None, 2], pa.int32()),
            "is ok": [True, False],
        })

    def test_conforming_table(self):
        self.assertEqual(bauplan.schema_differences(self.conforming(), Derived), [])
        self.assertEqual(Derived.differences(self.conforming()), [])
        # The table's own nullable flags do not matter, only the values.
        strict = self.conforming().cast(Derived.to_arrow_schema())
        self.assertEqual(Derived.differences(strict), [])

    def test_missing_column(self):
        table = self.conforming().drop_columns(["score"])
        self.assertEqual(Derived.differences(table), ["missing column 'score' (expected double)"])

    def test_extra_column(self):
        table = self.conforming().append_column("more", pa.array(["x", "y"]))
        self.assertEqual(Derived.differences(table),
                         ["extra column 'more' (string) is not declared in Derived"])
        self.assertEqual(Derived.differences(table, allow_extra_columns=True), [])

    def test_wrong_type(self):
        table = self.conforming().set_column(0, "id", pa.array([1, 2], pa.int32()))
        self.assertEqual(Derived.differences(table), ["column 'id' has type int32, expected int64"])
        naive = self.conforming().set_column(4, "when", pa.array([1, 2], pa.timestamp("us")))
        self.assertEqual(Derived.differences(naive),
                         ["column 'when' has type timestamp[us], expected timestamp[us, tz=UTC]"])
        millis = self.conforming().set_column(4, "when", pa.array([1, 2], pa.timestamp("ms", "UTC")))
        self.assertEqual(len(Derived.differences(millis)), 1)
        scale = self.conforming().set_column(3, "amount", pa.array([1, 2], pa.decimal128(10, 3)))
        self.assertEqual(Derived.differences(scale),
                         ["column 'amount' has type decimal128(10, 3), expected decimal128(10, 2)"])

    def test_nulls_in_non_nullable_column(self):
        table = self.conforming().set_column(0, "id", pa.array([None, None], pa.int64()))
        table = table.set_column(5, "forced", pa.array([None, 1], pa.int32()))
        self.assertEqual(Derived.differences(table), [
            "column 'id' is not nullable but holds 2 null values",
            "column 'forced' is not nullable but holds 1 null value",
        ])

    def test_several_differences_at_once(self):
        table = pa.table({"id": ["1"], "label": ["a"], "zzz": [1]})
        problems = Base.differences(table) + StringAnnotations.differences(
            {"a": pa.array([None], pa.int64())})
        self.assertEqual(problems, [
            "column 'id' has type string, expected int64",
            "extra column 'zzz' (int64) is not declared in Base",
            "column 'a' is not nullable but holds 1 null value",
            "missing column 'b' (expected date32[day])",
        ])

    def test_duplicate_column(self):
        table = pa.table([pa.array([1]), pa.array([2])], names=["id", "id"])
        self.assertEqual(Base.differences(table, allow_extra_columns=True), [
            "column 'id' appears 2 times", "missing column 'label' (expected string)"])

    def test_lenient_types(self):
        class Lenient(bauplan.TableSchema):
            text: bauplan.String
            blob: bauplan.Binary
            anything: bauplan.Any | None
            ts: bauplan.TimestampNanoUTC

        table = pa.table({
            "text": pa.array(["a"], pa.large_string()),
            "blob": pa.array([b"x"], pa.large_binary()),
            "anything": pa.array([[1, 2]]),
            "ts": pa.array([1], pa.timestamp("ns", tz="+00:00")),
        })
        self.assertEqual(Lenient.differences(table), [])
        self.assertEqual(Lenient.differences(table.set_column(3, "ts", pa.array(
            [1], pa.timestamp("ns", tz="Europe/Paris")))),
            ["column 'ts' has type timestamp[ns, tz=Europe/Paris], expected timestamp[ns, tz=UTC]"])

    def test_inputs_other_than_tables(self):
        batch = pa.record_batch({"id": [1], "label": pa.array([None], pa.string())})
        self.assertEqual(Base.differences(batch), [])
        # An all-null column inferred by pyarrow has the type null, not string.
        self.assertEqual(Base.differences({"id": [1], "label": [None]}),
                         ["column 'label' has type null, expected string"])
        self.assertEqual(Base.differences({"id": [1], "label": ["x"]}), [])


# ----------------------------------------------------- standard expectations --

@needs_pyarrow
class StandardExpectationsTest(unittest.TestCase):

    def setUp(self):
        self.table = pa.table({
            "full": ["a-1", "b-2", None],
            "first": ["a", "b", None],
            "num": [1, 2, None],
            "unique": [1, 2, 3],
            "dup": [1, 1, 2],
            "nulls": pa.array([None, None, None], pa.int64()),
            "two_nulls": [1, None, None],
            "status": ["paid", "paid", "new"],
            "mean": [1.0, 2.0, 6.0],
        })

    def check(self, expected, function, *args, **kwargs):
        result = function(self.table, *args, **kwargs)
        self.assertIs(result, expected, f"{function.__name__}{args}{kwargs}")

    def test_null_checks(self):
        self.check(True, se.expect_column_no_nulls, "unique")
        self.check(False, se.expect_column_no_nulls, "num")
        self.check(True, se.expect_column_some_null, "num")
        self.check(False, se.expect_column_some_null, "unique")
        self.check(True, se.expect_column_all_null, "nulls")
        self.check(False, se.expect_column_all_null, "two_nulls")
        self.check(True, se.expect_column_all_nulls, "nulls")
        self.check(False, se.expect_column_all_nulls, "num")

    def test_nan_is_not_null(self):
        table = pa.table({"x": [float("nan")]})
        self.assertTrue(se.expect_column_no_nulls(table, "x"))

    def test_uniqueness(self):
        self.check(True, se.expect_column_all_unique, "unique")
        self.check(False, se.expect_column_all_unique, "dup")
        self.check(True, se.expect_column_all_unique, "num")        # a single null is unique
        self.check(False, se.expect_column_all_unique, "two_nulls")  # two nulls are duplicates
        self.check(True, se.expect_column_values_to_be_unique, "unique")
        self.check(False, se.expect_column_values_to_be_unique, "dup")
        self.check(True, se.expect_column_not_unique, "dup")
        self.check(True, se.expect_column_not_unique, "two_nulls")
        self.check(False, se.expect_column_not_unique, "unique")

    def test_accepted_values(self):
        self.check(True, se.expect_column_accepted_values, "status", ["paid", "new", "void"])
        self.check(False, se.expect_column_accepted_values, "status", ["paid"])
        self.check(True, se.expect_column_accepted_values, "status",
                   accepted_values=("paid", "new"))
        self.check(False, se.expect_column_accepted_values, "num", [1, 2])  # null not accepted
        self.check(True, se.expect_column_accepted_values, "num", [1, 2, None])
        self.check(False, se.expect_column_accepted_values, "num", ["1", "2"])  # wrong type
        self.check(True, se.expect_column_accepted_values, "num", ["x", 1, 2, None])  # mixed

    def test_means(self):  # the mean of "mean" is 3.0, of "num" 1.5 (nulls ignored)
        self.check(True, se.expect_column_mean_greater_than, "mean", 2.9)
        self.check(False, se.expect_column_mean_greater_than, "mean", 3.0)
        self.check(True, se.expect_column_mean_greater_or_equal_than, "mean", 3.0)
        self.check(False, se.expect_column_mean_greater_or_equal_than, "mean", 3.1)
        self.check(True, se.expect_column_mean_smaller_than, "mean", 3.1)
        self.check(False, se.expect_column_mean_smaller_than, "mean", 3.0)
        self.check(True, se.expect_column_mean_smaller_or_equal_than, "mean", 3.0)
        self.check(False, se.expect_column_mean_smaller_or_equal_than, "mean", 2.9)
        self.check(True, se.expect_column_mean_greater_than, "num", 1.4)
        self.check(False, se.expect_column_mean_smaller_than, "num", 1.5)
        self.check(True, se.expect_column_mean_to_be_between, "mean", 3.0, 3.0)
        self.check(True, se.expect_column_mean_to_be_between, "mean", min_value=1)
        self.check(False, se.expect_column_mean_to_be_between, "mean", max_value=2)

    def test_mean_of_only_nulls_satisfies_nothing(self):
        for function in (se.expect_column_mean_greater_than, se.expect_column_mean_greater_or_equal_than,
                         se.expect_column_mean_smaller_than, se.expect_column_mean_smaller_or_equal_than):
            with self.subTest(function=function.__name__):
                self.check(False, function, "nulls", 0)
        self.check(False, se.expect_column_mean_to_be_between, "nulls", -1, 1)

    def test_values_between(self):
        self.check(True, se.expect_column_values_to_be_between, "num", 1, 2)  # null ignored
        self.check(False, se.expect_column_values_to_be_between, "num", 1, 1)
        self.check(True, se.expect_column_values_to_be_between, "unique", min_value=1)
        self.check(False, se.expect_column_values_to_be_between, "unique", min_value=2)
        self.check(True, se.expect_column_values_to_be_between, "nulls", 0, 0)
        self.check(True, se.expect_column_values_to_be_between, "status", "a", "z")
        with self.assertRaises(ValueError):
            se.expect_column_values_to_be_between(self.table, "num")
        with self.assertRaises(ValueError):
            se.expect_column_mean_to_be_between(self.table, "num")

    def test_equal_concatenation(self):
        self.check(True, se.expect_column_equal_concatenation, "full", ["first", "num"], "-")
        self.check(True, se.expect_column_equal_concatenation,
                   target_column="full", columns=["first", "num"], separator="-")
        self.check(False, se.expect_column_equal_concatenation, "full", ["first", "num"])
        self.check(False, se.expect_column_equal_concatenation, "full", ["first"], "-")
        self.check(True, se.expect_column_equal_concatenation, "first", ["first"])
        # A null target next to a non-null concatenation fails, and the reverse.
        table = pa.table({"t": [None], "a": ["x"]})
        self.assertIs(se.expect_column_equal_concatenation(table, "t", ["a"]), False)
        self.assertIs(se.expect_column_equal_concatenation(table, "a", ["t"]), False)
        with self.assertRaises(ValueError):
            se.expect_column_equal_concatenation(self.table, "full", [])

    def test_column_existence(self):
        self.check(True, se.expect_column_to_exist, "num")
        self.check(False, se.expect_column_to_exist, "nope")

    def test_empty_table(self):
        table = pa.table({"x": pa.array([], pa.int64())})
        for function, expected in [
            (se.expect_column_no_nulls, True), (se.expect_column_some_null, False),
            (se.expect_column_all_null, True), (se.expect_column_all_unique, True),
            (se.expect_column_not_unique, False), (se.expect_column_mean_greater_than, False),
            (se.expect_column_accepted_values, True),
            (se.expect_column_equal_concatenation, True),
        ]:
            args = {se.expect_column_mean_greater_than: (0,), se.expect_column_accepted_values: ([1],),
                    se.expect_column_equal_concatenation: (["x"],)}.get(function, ())
            with self.subTest(function=function.__name__):
                self.assertIs(function(table, "x", *args), expected)

    def test_other_table_forms(self):
        data = {"a": [1, 2, 2]}
        self.assertIs(se.expect_column_not_unique(data, "a"), True)
        self.assertIs(se.expect_column_no_nulls(pa.record_batch(data), "a"), True)
        self.assertIs(se.expect_column_mean_greater_than(data, "a", 1), True)

    def test_errors(self):
        with self.assertRaises(KeyError):
            se.expect_column_no_nulls(self.table, "missing")
        with self.assertRaises(KeyError):
            se.expect_column_equal_concatenation(self.table, "full", ["first", "missing"])
        with self.assertRaises(TypeError):
            se.expect_column_mean_greater_than(self.table, "status", 1)

    def test_every_public_function_is_tested(self):
        with open(__file__, encoding="utf-8") as file:
            source = file.read()
        for name in se.__all__:
            with self.subTest(name=name):
                self.assertIn(f"se.{name},", source)


if __name__ == "__main__":
    unittest.main()
