"""Data against a real `floe serve`: imports (files, globs, Arrow tables, dry runs,
append and replace), queries to Arrow and to bytes at any ref, and tables' metadata."""

from __future__ import annotations

import io
import json
import unittest

import pyarrow as pa
import pyarrow.parquet as pq
from support import ServerTest, csv_text

import floe


class Imports(ServerTest):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.client.create_namespace("db")

    def test_a_csv_file_becomes_a_table_that_queries_back(self) -> None:
        path = self.write("trips.csv", csv_text([(1, "a", 2.5), (2, "b", 7.0), (3, "c", 11.0)]))
        result = self.client.import_data("db.trips", path)
        self.assertEqual((result.table, result.branch, result.mode, result.rows),
                         ("db.trips", "main", "create", 3))
        self.assertFalse(result.dry_run)
        self.assertEqual([(f.format, f.action, f.rows) for f in result.files],
                         [("csv", "convert", 3)])
        self.assertEqual([f["name"] for f in result.schema["fields"]], ["id", "name", "fare"])
        self.assertEqual(self.client.get_branch("main").head, result.commit)
        job = self.client.get_job(result.job_id)
        self.assertEqual((job.kind, job.state, job.landed), ("import", "succeeded", result.commit))
        table = self.client.query("SELECT id, name, fare FROM db.trips ORDER BY id")
        self.assertIsInstance(table, pa.Table)
        self.assertEqual(table.to_pydict(), {"id": [1, 2, 3], "name": ["a", "b", "c"],
                                             "fare": [2.5, 7.0, 11.0]})
        self.assertEqual(table.schema.field("id").type, pa.int64())

    def test_an_arrow_table_and_a_glob_append_and_a_replace_replaces(self) -> None:
        self.client.create_branch("imp")
        first = pa.table({"k": pa.array([1, 2], pa.int64()), "v": ["x", "y"]})
        self.client.import_data("db.kv", first, branch="imp")
        for i in range(2):
            buffer = io.BytesIO()
            pq.write_table(pa.table({"k": pa.array([10 + i], pa.int64()), "v": [f"g{i}"]}),
                           buffer)
            (self.work / "glob").mkdir(exist_ok=True)
            (self.work / "glob" / f"part-{i}.parquet").write_bytes(buffer.getvalue())
        appended = self.client.import_data("db.kv", str(self.work / "glob" / "part-*.parquet"),
                                           branch="imp", mode="append")
        self.assertEqual((appended.mode, appended.rows, len(appended.files)), ("append", 2, 2))
        rows = self.client.query("SELECT k FROM db.kv ORDER BY k", ref="imp").column("k")
        self.assertEqual(rows.to_pylist(), [1, 2, 10, 11])
        self.client.import_data("db.kv", pa.table({"k": pa.array([99], pa.int64()),
                                                   "v": ["only"]}), branch="imp", mode="replace")
        self.assertEqual(self.client.query("SELECT k, v FROM db.kv", ref="imp").to_pylist(),
                         [{"k": 99, "v": "only"}])
        self.assertFalse(self.client.has_table("db.kv", "main"))

    def test_a_dry_run_changes_nothing_and_a_second_import_is_refused(self) -> None:
        path = self.write("dry.csv", csv_text([(1, "a", 1.0)]))
        head = self.client.get_branch("main").head
        plan = self.client.import_data("db.dry", path, dry_run=True)
        self.assertTrue(plan.dry_run)
        self.assertIsNone(plan.job_id)
        self.assertEqual(self.client.get_branch("main").head, head)
        self.assertFalse(self.client.has_table("db.dry"))
        self.client.import_data("db.dry", path)
        with self.assertRaises(floe.BadRequestError) as caught:
            self.client.import_data("db.dry", path)  # exists, and no mode
        self.assertIn("append", caught.exception.message)
        with self.assertRaises(floe.ConflictError) as caught:
            self.client.import_data("db.dry", path, mode="create")
        self.assertEqual(caught.exception.error_type, "TableAlreadyExists")
        with self.assertRaises(floe.ConflictError) as caught:
            self.client.import_data("db.dry", path, mode="append")  # the same file again
        self.assertEqual(caught.exception.error_type, "DuplicateImport")
        self.client.import_data("db.dry", path, mode="append", force=True)
        count = self.client.query("SELECT count(*) AS n FROM db.dry").column("n")
        self.assertEqual(count.to_pylist(), [2])

    def test_a_missing_file_or_namespace_is_refused(self) -> None:
        with self.assertRaises(FileNotFoundError):
            self.client.import_data("db.none", str(self.work / "nothing-*.csv"))
        path = self.write("orphan.csv", csv_text([(1, "a", 1.0)]))
        with self.assertRaises(floe.BadRequestError) as caught:
            self.client.import_data("nowhere.t", path)
        self.assertIn("nowhere", caught.exception.message)


class Queries(ServerTest):
    first: str

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.client.create_namespace("q")
        cls.client.import_data("q.nums", pa.table({"n": pa.array(range(10), pa.int64())}))
        cls.first = cls.client.get_branch("main").head
        cls.client.import_data("q.nums", pa.table({"n": pa.array([100], pa.int64())}),
                               mode="append")

    def test_a_query_reads_any_ref_spec(self) -> None:
        def total(ref: str) -> int:
            return self.client.query("SELECT sum(n) AS s FROM q.nums", ref).column("s")[0].as_py()

        self.assertEqual(total("main"), 145)
        self.assertEqual(total(f"main@{self.first}"), 45)
        self.assertEqual(total("main~1"), 45)
        self.assertEqual(total(self.first[:12]), 45)
        self.client.create_tag("q-v1", from_ref=self.first)
        self.assertEqual(total("q-v1"), 45)

    def test_bare_names_max_rows_and_empty_answers(self) -> None:
        table = self.client.query("SELECT n FROM nums ORDER BY n", namespace="q", max_rows=3)
        self.assertEqual(table.column("n").to_pylist(), [0, 1, 2])
        empty = self.client.query("SELECT n FROM q.nums WHERE n < 0")
        self.assertEqual((empty.num_rows, empty.column_names), (0, ["n"]))

    def test_the_answer_comes_in_every_format(self) -> None:
        sql = "SELECT n FROM q.nums WHERE n < 2 ORDER BY n"
        self.assertEqual(self.client.query_bytes(sql), b"n\n0\n1\n")
        self.assertEqual(json.loads(self.client.query_bytes(sql, format="json")),
                         [{"n": 0}, {"n": 1}])
        self.assertEqual(self.client.query_bytes(sql, format="ndjson").splitlines(),
                         [b'{"n":0}', b'{"n":1}'])
        parquet = pq.read_table(io.BytesIO(self.client.query_bytes(sql, format="parquet")))
        self.assertEqual(parquet.column("n").to_pylist(), [0, 1])
        arrow = pa.ipc.open_stream(self.client.query_bytes(sql, format="arrow")).read_all()
        self.assertEqual(arrow.column("n").to_pylist(), [0, 1])
        with self.assertRaises(ValueError):
            self.client.query_bytes(sql, format="xml")

    def test_bad_sql_and_unknown_tables_are_bad_requests_with_the_engines_message(self) -> None:
        with self.assertRaises(floe.BadRequestError) as caught:
            self.client.query("SELECT n FROM q.missing")
        self.assertEqual(caught.exception.error_type, "TableNotFound")
        self.assertIn("q.missing does not exist", caught.exception.message)
        with self.assertRaises(floe.BadRequestError) as caught:
            self.client.query("SELEC 1")
        self.assertEqual(caught.exception.error_type, "InvalidQuery")
        with self.assertRaises(floe.BadRequestError):
            self.client.query("DROP TABLE q.nums")
        with self.assertRaises(floe.NotFoundError):
            self.client.query("SELECT 1", ref="no-such-branch")


class Tables(ServerTest):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.client.create_namespace("t")

    def test_tables_are_listed_described_created_and_dropped(self) -> None:
        self.client.create_branch("tab")
        data = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "label": ["a", "b", "c"]})
        self.client.import_data("t.items", data, branch="tab")
        self.assertTrue(self.client.has_table("t.items", "tab"))
        self.assertFalse(self.client.has_table("t.items", "main"))
        self.assertFalse(self.client.has_table("t.other", "tab"))
        self.assertEqual([e.key for e in self.client.list_tables("tab", namespace="t")],
                         ["t.items"])
        table = self.client.get_table("t.items", "tab")
        self.assertEqual((table.fqn, table.records, table.snapshot_count), ("t.items", 3, 1))
        self.assertEqual([(f.name, f.type) for f in table.fields],
                         [("id", "long"), ("label", "string")])
        self.assertTrue(table.metadata_location)
        # An empty table with the schema a dry run infers, then filled by an append.
        plan = self.client.import_data("t.copy", data, branch="tab", dry_run=True)
        created = self.client.create_table("t.copy", plan.schema, "tab", message="empty copy")
        self.assertEqual((created.records, created.current_snapshot_id), (0, None))
        self.assertEqual(self.client.log("tab", limit=1)[0].message, "empty copy")
        self.client.import_data("t.copy", data, branch="tab", mode="append")
        self.assertEqual(self.client.get_table("t.copy", "tab").records, 3)
        self.client.drop_table("t.copy", "tab")
        self.assertFalse(self.client.has_table("t.copy", "tab"))
        with self.assertRaises(floe.NotFoundError):
            self.client.get_table("t.copy", "tab")
        with self.assertRaises(ValueError):
            self.client.drop_table("t.items", "tab", message="two\nlines")


if __name__ == "__main__":
    unittest.main()
