"""Tests for planner.py: run it as the floe server does and check its JSON.

Run with: cd compute-adapter/python && python3 -m unittest test_planner -v
"""

import json
import os
import subprocess
import sys
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PLANNER = os.path.join(HERE, "planner.py")


def run_planner(stdin_text):
    return subprocess.run([sys.executable, PLANNER], input=stdin_text, capture_output=True,
                          text=True, timeout=30, cwd=HERE)


def src(text):
    return textwrap.dedent(text).lstrip("\n")


class PlannerTest(unittest.TestCase):
    def plan(self, files):
        result = run_planner(json.dumps({"files": {k: src(v) for k, v in files.items()}}))
        self.assertEqual(result.returncode, 0, result.stderr)
        return json.loads(result.stdout)

    def only_node(self, plan):
        self.assertEqual(len(plan["nodes"]), 1, plan)
        return plan["nodes"][0]

    def assert_errors(self, plan, expected):
        """`expected` is a list of (file, line, message fragment)."""
        got = [(e["file"], e["line"], e["message"]) for e in plan["errors"]]
        self.assertEqual(len(got), len(expected), got)
        for (file, line, message), (efile, eline, fragment) in zip(got, expected):
            self.assertEqual((file, line), (efile, eline), got)
            self.assertIn(fragment, message)

    # ------------------------------------------------------- generations --

    def test_legacy_generation(self):
        plan = self.plan({"m.py": """
            import bauplan

            @bauplan.model(name="trips_clean", materialization_strategy="REPLACE",
                           columns=["id", "fare"], partitioned_by=["day"],
                           cache_strategy="NOCACHE", internet_access=True,
                           overwrite_filter="day = '2024-01-01'")
            @bauplan.python("3.11", pip={"pandas": "2.2.0"})
            @bauplan.resources(cpus=2, memory="4GB", timeout=60)
            def clean(
                trips=bauplan.Model("taxi.trips", columns=["id", "fare"], filter="fare > 1"),
                rate=bauplan.Parameter("rate"),
            ):
                return trips
            """})
        self.assertEqual(plan["errors"], [])
        node = self.only_node(plan)
        self.assertEqual(node["name"], "trips_clean")
        self.assertEqual(node["function"], "clean")
        self.assertEqual(node["kind"], "model")
        self.assertEqual((node["file"], node["line"]), ("m.py", 9))
        self.assertEqual(node["inputs"], [{
            "arg": "trips", "model": "taxi.trips", "columns": ["id", "fare"],
            "filter": "fare > 1", "projection_schema": None, "line": 10}])
        self.assertEqual(node["parameters"], [{"arg": "rate", "name": "rate", "line": 11}])
        self.assertEqual(node["model"], {
            "name": "trips_clean", "materialization_strategy": "REPLACE",
            "columns": ["id", "fare"], "partitioned_by": ["day"], "cache_strategy": "NOCACHE",
            "internet_access": True, "overwrite_filter": "day = '2024-01-01'"})
        self.assertEqual(node["python"], {"version": "3.11", "pip": {"pandas": "2.2.0"}})
        self.assertEqual(node["resources"], {"cpus": 2, "memory": "4GB", "timeout": 60})
        self.assertIsNone(node["output_schema"])

    def test_typed_generation(self):
        plan = self.plan({"typed.py": """
            import typing
            from typing import Annotated
            import bauplan
            import pyarrow

            class Trips(bauplan.TableSchema):
                id: bauplan.Int64

            @bauplan.model()
            @bauplan.python(version="3.12")
            def out(
                data: Annotated[pyarrow.Table, bauplan.Model("trips", projection_schema=Trips,
                                                             filter="id > 0")],
                rate: typing.Annotated[float, bauplan.Parameter("rate")],
            ) -> Annotated[pyarrow.Table, Trips]:
                return data
            """})
        self.assertEqual(plan["errors"], [])
        node = self.only_node(plan)
        self.assertEqual(node["name"], "out")
        self.assertEqual(node["line"], 11)
        self.assertEqual(node["inputs"], [{
            "arg": "data", "model": "trips", "columns": None, "filter": "id > 0",
            "projection_schema": "Trips", "line": 12}])
        self.assertEqual(node["parameters"], [{"arg": "rate", "name": "rate", "line": 14}])
        self.assertEqual(node["model"], {})
        self.assertEqual(node["python"], {"version": "3.12", "pip": {}})
        self.assertIsNone(node["resources"])
        self.assertEqual(node["output_schema"], "Trips")

    def test_model_positional_columns_filter_or_schema(self):
        plan = self.plan({"m.py": """
            import bauplan

            class S(bauplan.TableSchema):
                id: bauplan.Int64

            @bauplan.model()
            def legacy(data=bauplan.Model("t", ["id", "x"], "id > 1")):
                return data

            @bauplan.model()
            def typed(data=bauplan.Model("t", S, "id > 2")):
                return data
        """})
        self.assertEqual(plan["errors"], [])
        legacy, typed = plan["nodes"]
        self.assertEqual(legacy["inputs"][0]["columns"], ["id", "x"])
        self.assertEqual(legacy["inputs"][0]["filter"], "id > 1")
        self.assertEqual(typed["inputs"][0]["projection_schema"], "S")
        self.assertIsNone(typed["inputs"][0]["columns"])
        self.assertEqual(typed["inputs"][0]["filter"], "id > 2")

    def test_bare_decorator_and_keyword_only_defaults(self):
        node = self.only_node(self.plan({"m.py": """
            import bauplan

            @bauplan.model
            def plain(*, data=bauplan.Model(name="t"), p=bauplan.Parameter(param_name="x")):
                return data
            """}))
        self.assertEqual(node["name"], "plain")
        self.assertEqual([i["model"] for i in node["inputs"]], ["t"])
        self.assertEqual(node["parameters"], [{"arg": "p", "name": "x", "line": 4}])
        self.assertIsNone(node["python"])

    # ------------------------------------------------------------ imports --

    def test_module_alias(self):
        plan = self.plan({"m.py": """
            import bauplan as bp

            @bp.model(name="n")
            @bp.python("3.11")
            def f(d=bp.Model("t")):
                return d
            """})
        self.assertEqual(plan["errors"], [])
        self.assertEqual(self.only_node(plan)["name"], "n")

    def test_from_import_aliases(self):
        plan = self.plan({"m.py": """
            from bauplan import model as m, python, Model as Input, Parameter

            @m()
            @python("3.11")
            def f(d=Input("t", columns=["a"]), p=Parameter("p")):
                return d
            """})
        self.assertEqual(plan["errors"], [])
        node = self.only_node(plan)
        self.assertEqual(node["inputs"][0]["columns"], ["a"])
        self.assertEqual(node["parameters"][0]["name"], "p")

    def test_reversed_decorator_order(self):
        plan = self.plan({"m.py": """
            import bauplan

            @bauplan.resources(cpus=1)
            @bauplan.python("3.11")
            @bauplan.model(name="last")
            def f(d=bauplan.Model("t")):
                return d
            """})
        self.assertEqual(plan["errors"], [])
        node = self.only_node(plan)
        self.assertEqual((node["name"], node["line"]), ("last", 6))
        self.assertEqual(node["resources"], {"cpus": 1})
        self.assertEqual(node["python"]["version"], "3.11")

    def test_non_bauplan_model_is_not_a_node(self):
        plan = self.plan({"m.py": """
            import bauplan
            from other_framework import model

            @model()
            def not_ours(x):
                return x

            def helper(y):
                return y
            """})
        self.assertEqual(plan, {"nodes": [], "schemas": {}, "errors": []})

    # ------------------------------------------------------- expectations --

    def test_expectation(self):
        plan = self.plan({"e.py": """
            import bauplan
            from bauplan.standard_expectations import expect_column_no_nulls

            @bauplan.expectation()
            @bauplan.python("3.11")
            def test_no_nulls(data=bauplan.Model("clean", columns=["id"])):
                return expect_column_no_nulls(data, "id")
            """})
        self.assertEqual(plan["errors"], [])
        node = self.only_node(plan)
        self.assertEqual((node["kind"], node["name"]), ("expectation", "test_no_nulls"))
        self.assertEqual(node["model"], {})
        self.assertEqual(node["inputs"][0]["model"], "clean")

    # ------------------------------------------------------------ schemas --

    def test_schemas_with_table_field_optional_and_inheritance(self):
        plan = self.plan({
            "a.py": """
                import bauplan
                from typing import Optional
                from bauplan import TableSchema

                class Base(TableSchema):
                    \"\"\"Common columns.\"\"\"
                    id: bauplan.Int64 = bauplan.TableField(doc="the key")

                    def helper(self):
                        return 1
                """,
            "b.py": """
                import bauplan
                from a import Base

                class Wide(Base):
                    note: Optional[bauplan.String]
                    fare: bauplan.Float64 | None = bauplan.TableField(doc="x")

                class NotASchema:
                    x: int
                """})
        self.assertEqual(plan["errors"], [])
        schemas = plan["schemas"]
        self.assertEqual(set(schemas), {"Base", "Wide"})
        self.assertEqual(schemas["Base"]["file"], "a.py")
        self.assertEqual(schemas["Base"]["line"], 5)
        self.assertEqual(schemas["Base"]["columns"],
                         [{"name": "id", "type": "Int64", "line": 7}])
        self.assertEqual(schemas["Wide"]["columns"], [
            {"name": "note", "type": "String", "line": 5, "nullable": True},
            {"name": "fare", "type": "Float64", "line": 6, "nullable": True}])
        self.assertEqual(schemas["Wide"]["bases"], ["Base"])

    # ------------------------------------------------------------- errors --

    def test_syntax_error_is_reported_and_other_files_still_plan(self):
        plan = self.plan({
            "bad.py": "import bauplan\n\ndef broken(:\n    pass\n",
            "good.py": """
                import bauplan

                @bauplan.model()
                def ok():
                    return None
                """})
        self.assert_errors(plan, [("bad.py", 3, "syntax error")])
        self.assertEqual([n["name"] for n in plan["nodes"]], ["ok"])

    def test_non_literal_decorator_argument(self):
        plan = self.plan({"m.py": """
            import bauplan
            COLS = ["a"]

            @bauplan.model(
                columns=COLS,
            )
            @bauplan.python("3.11", pip=make_pip())
            def f():
                return None
            """})
        self.assert_errors(plan, [
            ("m.py", 5, "the argument `columns` of model() must be a literal (planning never runs code)"),
            ("m.py", 7, "the argument `pip` of python() must be a literal")])
        self.assertEqual(self.only_node(plan)["model"], {})

    def test_non_literal_model_and_parameter_arguments(self):
        plan = self.plan({"m.py": """
            import bauplan

            @bauplan.model()
            def f(
                d=bauplan.Model("t", filter=make_filter()),
                p=bauplan.Parameter(NAME),
            ):
                return d
            """})
        self.assert_errors(plan, [
            ("m.py", 5, "the argument `filter` of Model() must be a literal"),
            ("m.py", 6, "the argument `param_name` of Parameter() must be a literal")])

    def test_two_models_and_model_with_expectation(self):
        plan = self.plan({"m.py": """
            import bauplan

            @bauplan.model()
            @bauplan.model(name="again")
            def twice():
                return None

            @bauplan.expectation()
            @bauplan.model()
            def both():
                return None
            """})
        self.assert_errors(plan, [
            ("m.py", 4, "`twice` is decorated with model() twice"),
            ("m.py", 9, "`both` is decorated with both model() and expectation()")])

    def test_argument_that_is_not_an_input(self):
        plan = self.plan({"m.py": """
            import bauplan

            @bauplan.model()
            def f(good=bauplan.Model("t"),
                  x=3,
                  y: int = 4):
                return good
            """})
        self.assert_errors(plan, [
            ("m.py", 5, "argument `x` of `f` is neither a bauplan.Model(...) nor a "
                        "bauplan.Parameter(...) input"),
            ("m.py", 6, "argument `y` of `f`")])

    def test_model_without_name_or_with_non_string_name(self):
        plan = self.plan({"m.py": """
            import bauplan

            @bauplan.model()
            def f(a=bauplan.Model(columns=["x"]),
                  b=bauplan.Model(42),
                  c=bauplan.Model("fine")):
                return a
            """})
        self.assert_errors(plan, [("m.py", 4, "Model() needs a table name"),
                                  ("m.py", 5, "Model() needs a table name")])
        self.assertEqual([i["model"] for i in self.only_node(plan)["inputs"]], ["fine"])

    def test_python_without_model(self):
        plan = self.plan({"m.py": """
            import bauplan

            @bauplan.python("3.11")
            def orphan():
                return None
            """})
        self.assertEqual(plan["nodes"], [])
        self.assert_errors(plan, [
            ("m.py", 4, "decorated with python() but not model() or expectation()")])

    def test_every_error_is_collected(self):
        plan = self.plan({"m.py": """
            import bauplan

            @bauplan.model(columns=X)
            def one(x):
                return x

            @bauplan.resources(cpus=1)
            def two():
                return None
            """})
        self.assertEqual([e["line"] for e in plan["errors"]], [3, 4, 8])

    # ------------------------------------------------------------ project --

    def test_two_files_in_order_and_non_python_files_ignored(self):
        plan = self.plan({
            "pipeline/z_last.py": """
                import bauplan

                @bauplan.model()
                def final(d=bauplan.Model("first")):
                    return d
                """,
            "pipeline/a_first.py": """
                import bauplan

                @bauplan.model()
                def second(d=bauplan.Model("first")):
                    return d

                @bauplan.model()
                def first(d=bauplan.Model("raw.trips")):
                    return d
                """,
            "README.md": "@bauplan.model() not python at all (",
        })
        self.assertEqual(plan["errors"], [])
        self.assertEqual([(n["file"], n["name"]) for n in plan["nodes"]], [
            ("pipeline/a_first.py", "second"), ("pipeline/a_first.py", "first"),
            ("pipeline/z_last.py", "final")])

    def test_user_code_is_never_executed(self):
        marker = "/tmp/planner-pwned"
        if os.path.exists(marker):
            os.remove(marker)
        plan = self.plan({"evil.py": f"""
            import bauplan
            open({marker!r}, "w").write("pwned")
            raise SystemExit(3)

            @bauplan.model(name=open({marker!r}, "w").name)
            def f(d=bauplan.Model("t")):
                return d
            """})
        self.assertFalse(os.path.exists(marker))
        self.assertEqual(self.only_node(plan)["name"], "f")
        self.assert_errors(plan, [("evil.py", 5, "the argument `name` of model()")])

    def test_unreadable_stdin_exits_non_zero(self):
        for text in ("not json", '{"nofiles": 1}', '{"files": {"a.py": 3}}'):
            result = run_planner(text)
            self.assertNotEqual(result.returncode, 0, text)
            self.assertEqual(result.stdout, "")

    def test_planner_compiles(self):
        # Byte-compile planner.py itself (not user code) without writing a .pyc.
        with open(PLANNER, encoding="utf-8") as handle:
            compile(handle.read(), PLANNER, "exec")


if __name__ == "__main__":
    unittest.main()
