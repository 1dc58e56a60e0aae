"""The client's pieces that need no server: idempotency keys, path encoding, error
parsing, how a project is packed, multipart bodies, and the Bauplan layer's translations."""

from __future__ import annotations

import io
import os
import re
import tarfile
import tempfile
import unittest
import warnings
from pathlib import Path

import support  # noqa: F401  (puts the package under test on the path)

import floe
import floe.bauplan as bauplan
from floe import _http, _jobs
from floe.bauplan import _client as compat
from floe.errors import error_for


class IdempotencyKeys(unittest.TestCase):
    def test_keys_are_uuid7_distinct_and_ordered_by_time(self) -> None:
        keys = [_http.uuid7() for _ in range(200)]
        pattern = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        for key in keys:
            self.assertRegex(key, pattern)
        self.assertEqual(len(set(keys)), len(keys))
        # The first 48 bits are milliseconds: never decreasing.
        stamps = [int(k.replace("-", "")[:12], 16) for k in keys]
        self.assertEqual(stamps, sorted(stamps))


class Paths(unittest.TestCase):
    def test_a_segment_keeps_slashes_and_spec_characters_inside(self) -> None:
        self.assertEqual(_http.segment("feature/x"), "feature%2Fx")
        self.assertEqual(_http.segment("main*2026-01-01T00:00:00Z"),
                         "main%2A2026-01-01T00%3A00%3A00Z")
        self.assertEqual(_http.segment("main~2"), "main~2")
        self.assertEqual(_http.segment("a b"), "a%20b")

    def test_query_values_skip_none_and_spell_booleans(self) -> None:
        t = _http.Transport("http://h:1/", token=None, timeout_s=1)
        self.assertEqual(t.url("/p", {"a": None, "b": True, "c": "x y+z"}),
                         "http://h:1/p?b=true&c=x%20y%2Bz")

    def test_names_of_tables_and_namespaces(self) -> None:
        self.assertEqual(floe.client.table_elements("db.t"), ["db", "t"])
        self.assertEqual(floe.client.table_elements("t", "a.b"), ["a", "b", "t"])
        self.assertEqual(floe.client.namespace_elements(["a.b", "c"]), ["a.b", "c"])
        with self.assertRaises(ValueError):
            floe.client.table_elements("t")
        with self.assertRaises(ValueError):
            floe.client.namespace_elements("a..b")


class Errors(unittest.TestCase):
    def test_floes_error_body_becomes_a_typed_error(self) -> None:
        body = {"type": "Conflict", "message": "conflict on 1 key(s)", "errorId": "e1",
                "status": 409, "currentHead": "ab" * 32,
                "conflicts": [{"key": "db.t", "kind": "both-changed"}]}
        e = error_for(409, body, "")
        self.assertIsInstance(e, floe.ConflictError)
        self.assertEqual((e.status, e.error_type, e.message, e.error_id),
                         (409, "Conflict", "conflict on 1 key(s)", "e1"))
        self.assertEqual(e.current_head, "ab" * 32)
        self.assertEqual(e.conflicts[0]["key"], "db.t")
        self.assertEqual(str(e), "409 Conflict: conflict on 1 key(s)")

    def test_the_iceberg_error_shape_and_text_bodies_are_read_too(self) -> None:
        e = error_for(404, {"error": {"message": "table db.x does not exist",
                                      "type": "NoSuchTableException", "code": 404}}, "")
        self.assertIsInstance(e, floe.NotFoundError)
        self.assertEqual((e.error_type, e.message), ("NoSuchTableException",
                                                     "table db.x does not exist"))
        e = error_for(502, None, "bad gateway\n")
        self.assertIs(type(e), floe.FloeError)
        self.assertEqual(e.message, "bad gateway")
        self.assertIsInstance(error_for(400, {}, ""), floe.BadRequestError)

    def test_an_unreachable_server_is_a_connection_error(self) -> None:
        client = floe.Client("http://127.0.0.1:9", timeout_s=5)
        with self.assertRaises(floe.FloeConnectionError) as caught:
            client.list_branches()
        self.assertIn("cannot reach the floe server at http://127.0.0.1:9", str(caught.exception))

    def test_a_failed_job_raises_only_when_asked(self) -> None:
        record = {"id": "r1", "kind": "run", "state": "failed", "pipeline": {
            "nodes": [{"name": "m", "state": "failed", "error": {"message": "boom"}}]}}
        job = floe.Job.from_json(record)
        with self.assertRaises(floe.JobFailedError) as caught:
            job.raise_for_state()
        self.assertIn("m: boom", str(caught.exception))
        self.assertIs(caught.exception.job, job)
        ok = floe.Job.from_json({**record, "state": "succeeded", "pipeline": None})
        self.assertIs(ok.raise_for_state(), ok)


class Configuration(unittest.TestCase):
    def test_url_and_token_come_from_arguments_or_the_environment(self) -> None:
        saved = {k: os.environ.get(k) for k in ("FLOE_URL", "FLOE_TOKEN")}
        try:
            os.environ.pop("FLOE_URL", None)
            os.environ.pop("FLOE_TOKEN", None)
            self.assertEqual(floe.Client().url, "http://127.0.0.1:8181")
            os.environ["FLOE_URL"] = "http://example.test:9/"
            os.environ["FLOE_TOKEN"] = "s3cret"
            client = floe.Client()
            self.assertEqual(client.url, "http://example.test:9")
            self.assertEqual(client._http.headers()["Authorization"], "Bearer s3cret")
            self.assertEqual(floe.Client("http://x", token="t")._http.headers()["Authorization"],
                             "Bearer t")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


class Projects(unittest.TestCase):
    def setUp(self) -> None:
        self.root = Path(tempfile.mkdtemp())
        for relative in ("bauplan_project.yml", "models.py", "sql/a.sql", "sql/deep/b.sql",
                         "requirements.txt", "notes.txt", ".hidden/c.sql",
                         "__pycache__/d.py", "data/e.csv"):
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"-- {relative}\n")

    def test_a_project_sends_its_file_and_its_code_only(self) -> None:
        os.symlink(self.root / "models.py", self.root / "linked.py")
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            files = _jobs.project_files(self.root)
        self.assertEqual(list(files), ["bauplan_project.yml", "models.py", "requirements.txt",
                                       "sql/a.sql", "sql/deep/b.sql"])
        self.assertTrue(any("symbolic link" in str(w.message) for w in seen))

    def test_the_archive_is_the_same_bytes_every_time(self) -> None:
        first = _jobs.pack(_jobs.project_files(self.root))
        self.assertEqual(first, _jobs.pack(_jobs.project_files(self.root)))
        with tarfile.open(fileobj=io.BytesIO(first)) as tar:
            members = tar.getmembers()
            self.assertEqual([m.name for m in members][0], "bauplan_project.yml")
            self.assertTrue(all(m.mode == 0o644 and m.mtime == 0 and m.isfile()
                                for m in members))
            member = tar.extractfile("sql/a.sql")
            assert member is not None
            self.assertEqual(member.read(), b"-- sql/a.sql\n")

    def test_a_folder_without_a_project_file_is_refused(self) -> None:
        (self.root / "bauplan_project.yml").unlink()
        with self.assertRaisesRegex(FileNotFoundError, "has no bauplan_project.yml"):
            _jobs.project_files(self.root)

    def test_parameters_travel_as_floe_parses_them(self) -> None:
        self.assertEqual([_jobs.parameter_text(v) for v in (True, False, 3, 2.5, "x")],
                         ["true", "false", "3", "2.5", "x"])


class Bodies(unittest.TestCase):
    def test_a_multipart_body_is_as_long_as_it_says_and_can_be_sent_again(self) -> None:
        with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False) as f:
            f.write(b"a\n1\n" * 1000)
        body = _http.Multipart([
            _http.Part("request", "application/json", data=b'{"table":"db.t"}'),
            _http.Part("file", "application/octet-stream", path=f.name, filename='we"ird.csv'),
        ])
        first = b"".join(body.chunks())
        self.assertEqual(len(first), body.length)
        self.assertEqual(first, b"".join(body.chunks()))
        self.assertIn(b'filename="we_ird.csv"', first)
        self.assertTrue(first.endswith(f"--{body.boundary}--\r\n".encode()))
        os.unlink(f.name)

    def test_log_lines_split_into_their_fields(self) -> None:
        line = floe.LogLine.parse("2026-01-01T00:00:00Z model stdout hello world")
        self.assertEqual((line.node, line.stream, line.text), ("model", "stdout", "hello world"))
        self.assertEqual(str(line), "model stdout hello world")
        self.assertEqual(floe.LogLine.parse("odd").text, "odd")


class BauplanLayer(unittest.TestCase):
    def test_refs_pin_their_commit_and_branch_arguments_take_the_name(self) -> None:
        branch = bauplan.Branch("dev", "ab12")
        self.assertEqual(str(branch), "dev@ab12")
        self.assertEqual(compat._ref_spec(branch), "dev@ab12")
        self.assertEqual(compat._ref_spec(None), "main")
        self.assertEqual(compat._branch_name(branch), "dev")
        self.assertEqual(str(bauplan.DetachedRef("ab12")), "ab12")
        self.assertEqual(bauplan.Tag("v1", "ab").type, bauplan.RefType.TAG)

    def test_bare_table_names_are_in_namespace_bauplan(self) -> None:
        self.assertEqual(compat._table_key("t", None), "bauplan.t")
        self.assertEqual(compat._table_key("t", "raw"), "raw.t")
        self.assertEqual(compat._table_key("a.t", "raw"), "a.t")

    def test_floe_errors_become_bauplans_and_stay_floes(self) -> None:
        exists = error_for(409, {"type": "RefAlreadyExists", "message": "ref v1 already exists"}, "")
        e = bauplan.exceptions.translate(exists, "tag")
        self.assertIsInstance(e, bauplan.exceptions.TagExistsError)
        self.assertIsInstance(e, bauplan.exceptions.UpdateConflictError)
        self.assertIsInstance(e, floe.ConflictError)
        self.assertEqual((e.code, e.type, e.message), (409, "RefAlreadyExists",
                                                       "ref v1 already exists"))
        missing = error_for(404, {"type": "RefNotFound", "message": "ref x does not exist"}, "")
        self.assertIsInstance(bauplan.exceptions.translate(missing, "branch"),
                              bauplan.exceptions.BranchNotFoundError)
        self.assertIsInstance(bauplan.exceptions.translate(missing, "ref"),
                              bauplan.exceptions.RefNotFoundError)
        merge = error_for(409, {"type": "Conflict", "message": "conflict"}, "")
        self.assertIsInstance(bauplan.exceptions.translate(merge, "merge"),
                              bauplan.exceptions.MergeConflictError)
        bad_sql = error_for(400, {"type": "InvalidQuery", "message": "syntax"}, "")
        self.assertIsInstance(bauplan.exceptions.translate(bad_sql, "query"),
                              bauplan.exceptions.BauplanQueryError)

    def test_what_floe_cannot_do_says_so(self) -> None:
        client = bauplan.Client("http://127.0.0.1:9")
        with self.assertRaisesRegex(NotImplementedError, "s3:// search URIs"):
            client.import_data("t", "s3://bucket/*.parquet", branch="main")
        with self.assertRaisesRegex(NotImplementedError, "priority"):
            client.query("SELECT 1", priority=5)
        with self.assertRaisesRegex(NotImplementedError, "revert_table"):
            client.revert_table("t", source_ref="main", into_branch="dev")
        with self.assertRaisesRegex(NotImplementedError, "profiles"):
            bauplan.Client(profile="default")


if __name__ == "__main__":
    unittest.main()
