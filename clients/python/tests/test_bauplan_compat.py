"""`floe.bauplan.Client` against a real `floe serve`: a Bauplan-style orchestration script
(`scripts/wap_flow.py`) runs with only its client's construction changed, and each call
answers Bauplan's shapes and raises Bauplan's exceptions."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
import unittest
from pathlib import Path

from support import PACKAGE_ROOT, ServerTest, csv_text, project

import floe
import floe.bauplan as bauplan

SCRIPT = PACKAGE_ROOT / "tests" / "scripts" / "wap_flow.py"
TRIPS = [(i, f"t{i}", float(i)) for i in range(1, 11)]  # fares 1.0 .. 10.0


class OrchestrationScript(ServerTest):
    def test_a_bauplan_wap_script_runs_against_floe(self) -> None:
        data = self.work / "trips.csv"
        data.write_text(csv_text(TRIPS))
        fares = project(self.work, "fares", source="raw.trips", namespace="analytics")
        env = {**os.environ, "FLOE_URL": self.server.url,
               "PYTHONPATH": str(PACKAGE_ROOT / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "--file-path", str(data), "--project-dir", str(fares)],
            env=env, capture_output=True, text=True, timeout=300,
        )
        self.assertEqual(done.returncode, 0, f"{done.stdout}\n{done.stderr}")
        self.assertTrue(done.stdout.rstrip().endswith("ok"), done.stdout)
        self.assertIn("published 8 fares, total 52.0", done.stdout)
        # The script's log streamed as Bauplan's does: the model's print is in it.
        self.assertIn("fare_totals stdout totalling 8 fares", done.stdout)
        # What the script published is on main, as one merge of the branch's commits.
        main = self.client
        self.assertEqual(main.query("SELECT n, total FROM analytics.fare_totals").to_pylist(),
                         [{"n": 8, "total": 52.0}])
        self.assertEqual(main.query("SELECT count(*) AS n FROM raw.trips").to_pylist(),
                         [{"n": 10}])
        self.assertEqual([b.name for b in main.list_branches()], ["main"])
        kept = [b.name for b in main.list_branches(all=True) if b.name != "main"]
        failed = main.list_jobs(kind="run", state="failed")
        self.assertEqual(kept, [j.branch for j in failed], "the failed run's branch stays")
        tag = main.get_tag("anonymous.audited")
        landed = [j for j in main.list_jobs(kind="run", state="succeeded")]
        self.assertEqual(len(landed), 1)
        self.assertEqual(tag.head, landed[0].landed)
        self.assertEqual(len(failed), 1)
        self.assertEqual(main.log("main", limit=1)[0].hash, landed[0].landed)


class Calls(ServerTest):
    bp: bauplan.Client
    data: Path
    fares: Path

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.bp = bauplan.Client(url=cls.server.url)
        cls.data = cls.work / "trips.csv"
        cls.data.write_text(csv_text(TRIPS))
        cls.bp.create_namespace("raw", branch="main")
        cls.bp.create_namespace("analytics", branch="main")
        cls.bp.create_table("trips", str(cls.data), namespace="raw", branch="main")
        cls.bp.import_data("trips", str(cls.data), namespace="raw", branch="main")
        cls.fares = project(cls.work, "fares", source="raw.trips", namespace="analytics")

    def test_branches_and_tags_answer_bauplans_shapes_and_errors(self) -> None:
        bp = self.bp
        branch = bp.create_branch("anonymous.refs", from_ref="main")
        self.assertIsInstance(branch, bauplan.Branch)
        self.assertEqual(branch.type, bauplan.RefType.BRANCH)
        self.assertEqual(branch.hash, bp.get_branch("main").hash)
        self.assertEqual(bp.create_branch(branch, "main", if_not_exists=True), branch)
        with self.assertRaises(bauplan.exceptions.BranchExistsError) as caught:
            bp.create_branch("anonymous.refs", from_ref="main")
        self.assertEqual(caught.exception.code, 409)
        self.assertIsInstance(caught.exception, floe.ConflictError)
        self.assertIn("anonymous.refs", [b.name for b in bp.get_branches(name="refs")])
        with self.assertRaises(bauplan.exceptions.BranchNotFoundError):
            bp.get_branch("anonymous.none")
        self.assertFalse(bp.has_branch("anonymous.none"))
        tag = bp.create_tag("anonymous.v1", branch)
        self.assertEqual((tag.type, tag.hash), (bauplan.RefType.TAG, branch.hash))
        with self.assertRaises(bauplan.exceptions.TagExistsError):
            bp.create_tag("anonymous.v1", "main")
        self.assertEqual([t.name for t in bp.get_tags(filter_by_name="v1")], ["anonymous.v1"])
        self.assertTrue(bp.delete_tag("anonymous.v1"))
        self.assertFalse(bp.delete_tag("anonymous.v1", if_exists=True))
        with self.assertRaises(bauplan.exceptions.TagNotFoundError):
            bp.delete_tag("anonymous.v1")
        self.assertTrue(bp.delete_branch(branch))
        self.assertFalse(bp.delete_branch("anonymous.refs", if_exists=True))

    def test_namespaces_merges_and_commits(self) -> None:
        bp = self.bp
        bp.create_branch("anonymous.ns", from_ref="main")
        made = bp.create_namespace("scratch", "anonymous.ns", commit_body="make scratch")
        self.assertEqual(made, bauplan.Namespace("scratch"))
        self.assertTrue(bp.has_namespace("scratch", ref="anonymous.ns"))
        self.assertFalse(bp.has_namespace("scratch", ref="main"))
        with self.assertRaises(bauplan.exceptions.NamespaceExistsError):
            bp.create_namespace("scratch", "anonymous.ns")
        self.assertEqual(bp.create_namespace("scratch", "anonymous.ns", if_not_exists=True),
                         made)
        self.assertIn("scratch", [n.name for n in bp.get_namespaces("anonymous.ns")])
        with self.assertRaises(bauplan.exceptions.NamespaceNotFoundError):
            bp.get_namespace("nowhere", ref="main")
        commits = list(bp.get_commits("anonymous.ns", filter_by_message="^make", limit=5))
        self.assertEqual([c.message for c in commits], ["make scratch"])
        self.assertEqual(commits[0].ref, bauplan.Branch("anonymous.ns", commits[0].hash))
        self.assertEqual(commits[0].author.name, "anonymous")
        self.assertEqual(list(bp.get_commits("anonymous.ns", filter_by_author_name="^nobody$")),
                         [])
        merged = bp.merge_branch(source_ref="anonymous.ns", into_branch="main",
                                 commit_message="publish scratch")
        self.assertEqual(merged, bp.get_branch("main"))
        self.assertTrue(bp.has_namespace("scratch", ref="main"))
        # Both sides make the same namespace differently: a merge conflict.
        bp.create_namespace("clash", "anonymous.ns")
        bp.create_namespace("clash", "main")
        with self.assertRaises(bauplan.exceptions.MergeConflictError) as caught:
            bp.merge_branch("anonymous.ns", "main")
        self.assertEqual(caught.exception.conflicts[0]["key"], "clash")
        self.assertIsInstance(bp.delete_namespace("clash", "main"), bauplan.Branch)
        self.assertFalse(bp.has_namespace("clash", ref="main"))

    def test_tables_imports_queries_and_scans(self) -> None:
        bp = self.bp
        table = bp.get_table("trips", ref="main", namespace="raw")
        self.assertEqual((table.fqn, table.records), ("raw.trips", 10))
        self.assertEqual([f.name for f in table.fields], ["id", "name", "fare"])
        self.assertTrue(bp.has_table("raw.trips", ref="main"))
        self.assertFalse(bp.has_table("trips", ref="main"))  # bare names are in `bauplan`
        self.assertEqual([t.fqn for t in bp.get_tables("main", filter_by_namespace="raw")],
                         ["raw.trips"])
        bp.create_branch("anonymous.tables", from_ref="main")
        again = bp.import_data("trips", str(self.data), namespace="raw", branch="anonymous.tables")
        self.assertEqual((again.job_status, again.job_id), ("FAILED", None))
        self.assertIn("imported", again.error or "")
        forced = bp.import_data("raw.trips", str(self.data), branch="anonymous.tables",
                                import_duplicate_files=True)
        self.assertEqual(forced.job_status, "SUCCESS")
        self.assertEqual(bp.get_job(forced.job_id).kind, bauplan.JobKind.TABLE_IMPORT)
        with self.assertRaises(bauplan.exceptions.TableNotFoundError):
            bp.import_data("raw.absent", str(self.data), branch="anonymous.tables")
        rows = bp.query("SELECT count(*) AS n FROM raw.trips", ref="anonymous.tables")
        self.assertEqual(rows.to_pylist(), [{"n": 20}])
        scanned = bp.scan("raw.trips", ref="main", columns=["id"], filters="fare > 8", limit=5)
        self.assertEqual(sorted(scanned.column("id").to_pylist()), [9, 10])
        generated = list(bp.query_to_generator("SELECT id FROM raw.trips WHERE id < 3 "
                                               "ORDER BY id", ref="main"))
        self.assertEqual(generated, [{"id": 1}, {"id": 2}])
        path = bp.query_to_csv_file(self.work / "out.csv", "SELECT 1 AS one")
        self.assertEqual(path.read_text(), "one\n1\n")
        with self.assertRaises(bauplan.exceptions.BauplanQueryError):
            bp.query("SELECT * FROM raw.absent")
        branch = bp.delete_table("trips", "anonymous.tables", namespace="raw")
        self.assertFalse(bp.has_table("raw.trips", ref=branch))
        self.assertTrue(bp.has_table("raw.trips", ref="main"))

    def test_runs_and_jobs(self) -> None:
        bp = self.bp
        bp.create_branch("anonymous.runs", from_ref="main")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):  # the log streams to stdout, as Bauplan's
            state = bp.run(str(self.fares), ref="anonymous.runs", parameters={"min_fare": 9},
                           namespace="analytics")
            failed = bp.run(str(self.fares), ref="anonymous.runs", parameters={"fail": True})
            again = bp.run(str(self.fares), ref="anonymous.runs", parameters={"min_fare": 9})
            fresh = bp.run(str(self.fares), ref="anonymous.runs", parameters={"min_fare": 9},
                           cache="off")
        self.assertIn("fare_totals stdout totalling 2 fares\n", printed.getvalue())
        # `cache` is floe's results cache: on reuses the first run's outputs, off executes.
        assert again.job is not None and fresh.job is not None
        self.assertEqual([n.cached for n in again.job.nodes], [True, True])
        self.assertEqual((again.user_logs, again.ctx.cache), ([], "on"))
        self.assertEqual([n.cached for n in fresh.job.nodes], [False, False])
        self.assertEqual(([e.message for e in fresh.user_logs], fresh.ctx.cache),
                         (["totalling 2 fares"], "off"))
        self.assertIn("ValueError: asked to fail", printed.getvalue())
        self.assertEqual((state.job_status, state.error), ("SUCCESS", None))
        self.assertEqual(set(state.tasks_started), {"fares", "fare_totals"})
        self.assertEqual([e.message for e in state.user_logs], ["totalling 2 fares"])
        self.assertGreater(state.duration or 0, 0)
        self.assertEqual(fresh.landed, bp.get_branch("anonymous.runs").hash)
        self.assertEqual(bp.query("SELECT total FROM analytics.fare_totals",
                                  ref="anonymous.runs").to_pylist(), [{"total": 19.0}])
        self.assertEqual(failed.job_status, "FAILED")
        self.assertIn("asked to fail", failed.error or "")
        broken = project(self.work, "broken", source="raw.nothing", namespace="analytics")
        refused = bp.run(str(broken), ref="anonymous.runs")
        self.assertEqual((refused.job_id, refused.job_status), (None, "FAILED"))
        self.assertIn("raw.nothing", refused.error or "")
        # Detached, then polled as Bauplan's own tests do.
        detached = bp.run(str(self.fares), ref="anonymous.runs", dry_run=True, detach=True)
        self.assertIsNotNone(detached.job_id)
        self.assertIsNone(detached.job_status)
        self.assertTrue(detached.ctx.detach and detached.ctx.dry_run)
        for _ in range(600):
            job = bp.get_job(detached.job_id)
            if job.status_type not in (bauplan.JobState.RUNNING, bauplan.JobState.NOT_STARTED):
                break
            time.sleep(0.1)
        self.assertEqual(job.status, bauplan.JobState.COMPLETE)
        self.assertEqual(job.kind, bauplan.JobKind.RUN)
        newest = list(bp.get_jobs(filter_by_kinds=bauplan.JobKind.RUN, limit=2))
        self.assertEqual(newest[0].id, detached.job_id)
        fails = list(bp.get_jobs(filter_by_statuses="FAIL"))
        self.assertEqual([j.id for j in fails], [failed.job_id])
        context = bp.get_job_context(state.job_id, include_logs=True, include_snapshot=True)
        self.assertEqual(context.project_name, "fares")
        self.assertIn("models.py", context.snapshot_dict)
        self.assertIn(bauplan.schema.DAGEdge("fares", "fare_totals"), context.dag_edges)
        self.assertTrue(any(e.message == "totalling 2 fares" for e in context.logs))
        self.assertIsNone(bp.cancel_job(state.job_id))  # ended already: nothing changes
        with self.assertRaises(bauplan.exceptions.ResourceNotFoundError):
            bp.get_job("no-such-job")

    def test_what_floe_cannot_do_is_refused_not_ignored(self) -> None:
        bp = self.bp
        with self.assertRaisesRegex(NotImplementedError, "partitioned_by"):
            bp.create_table("t", str(self.data), namespace="raw", partitioned_by="day(ts)")
        with self.assertRaisesRegex(NotImplementedError, "continue_on_error"):
            bp.import_data("raw.trips", str(self.data), continue_on_error=True)
        with self.assertRaisesRegex(NotImplementedError, "args"):
            bp.run(str(self.fares), args={"k": "v"})
        with self.assertRaisesRegex(NotImplementedError, "CEL"):
            bp.get_commits("main", filter="x")
        self.assertEqual(bp.info().user.username, "anonymous")


if __name__ == "__main__":
    unittest.main()
