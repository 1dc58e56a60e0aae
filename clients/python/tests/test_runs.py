"""Pipeline runs and jobs against a real `floe serve`: `run` packs and submits a project,
streams its log and answers the landed record; failures, planning errors, dry runs, plans,
detached runs waited for, cancelled and promoted, and the job listings."""

from __future__ import annotations

import io
import tarfile
import time
import unittest
from pathlib import Path

from support import ServerTest, csv_text, project

import floe

SLOW_MODEL = """\
import time

import bauplan


@bauplan.model()
def slow(trips=bauplan.Model("trips")):
    print("sleeping", flush=True)
    time.sleep(120)
    return trips
"""

# How long a test waits for a detached run to reach a state.
STATE_WAIT_S = 60


class Runs(ServerTest):
    project: Path

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.client.create_namespace("raw")
        cls.client.create_namespace("analytics")
        rows = [(i, f"t{i}", float(i)) for i in range(1, 11)]  # fares 1.0 .. 10.0
        path = cls.work / "trips.csv"
        path.write_text(csv_text(rows))
        cls.client.import_data("raw.trips", str(path))
        cls.project = project(cls.work, "fares", source="raw.trips", namespace="analytics")

    def test_a_project_runs_streams_its_log_and_lands_as_one_commit(self) -> None:
        self.client.create_branch("run-ok")
        before = self.client.get_branch("run-ok").head
        lines: list[floe.LogLine] = []
        job = self.client.run(self.project, "run-ok", parameters={"min_fare": 5},
                              on_log=lines.append)
        self.assertEqual((job.kind, job.state, job.target), ("run", "succeeded", "run-ok"))
        self.assertTrue(job.succeeded and job.ended)
        self.assertEqual(job.landed, self.client.get_branch("run-ok").head)
        self.assertEqual(job.fork, before)
        self.assertEqual(job.project_name, "fares")
        self.assertEqual(job.parameters["min_fare"], 5.0)
        self.assertEqual([(n.name, n.state, n.rows, n.output_table) for n in job.nodes],
                         [("fares", "succeeded", 6, "analytics.fares"),
                          ("fare_totals", "succeeded", 1, "analytics.fare_totals")])
        # The log streamed line by line, and the model's print is in it.
        self.assertEqual(lines, job.logs)
        self.assertIn(("fare_totals", "stdout", "totalling 6 fares"),
                      [(line.node, line.stream, line.text) for line in lines])
        self.assertEqual(lines[-1].node, "run")
        # One commit on the branch, carrying the run's id; the outputs read back.
        top = self.client.log("run-ok", limit=1)[0]
        self.assertEqual((top.hash, top.parents), (job.landed, [before]))
        self.assertEqual(top.properties["floe.run.id"], job.id)
        totals = self.client.query("SELECT n, total FROM analytics.fare_totals", "run-ok")
        self.assertEqual(totals.to_pylist(), [{"n": 6, "total": 45.0}])
        self.assertFalse(self.client.has_table("analytics.fares", "main"))
        self.assertEqual(self.client.get_job(job.id).landed, job.landed)

    def test_a_failing_model_fails_the_run_and_the_branch_stays(self) -> None:
        self.client.create_branch("run-fail")
        before = self.client.get_branch("run-fail").head
        job = self.client.run(self.project, "run-fail", parameters={"fail": True}, on_log=None)
        self.assertEqual((job.state, job.failure, job.landed), ("failed", "execution", None))
        self.assertIn("asked to fail", job.node("fare_totals").error or "")
        self.assertEqual(job.node("fares").state, "succeeded")
        self.assertTrue(job.sealed)
        self.assertEqual(self.client.get_branch("run-fail").head, before)
        with self.assertRaises(floe.JobFailedError) as caught:
            job.raise_for_state()
        self.assertIn("asked to fail", str(caught.exception))
        failed = self.client.list_jobs(state="failed", target="run-fail")
        self.assertEqual([j.id for j in failed], [job.id])
        promoted = self.client.promote_job(job.id)
        self.assertTrue(promoted.promoted)
        self.assertFalse(promoted.sealed)

    def test_a_project_that_does_not_plan_is_refused_with_file_and_line(self) -> None:
        broken = project(self.work, "broken", source="raw.trips", namespace="analytics",
                         extra={"models/bad.sql": "SELECT * FROM no_such_table\n"})
        before = len(self.client.list_jobs())
        with self.assertRaises(floe.BadRequestError) as caught:
            self.client.run(broken, "main", on_log=None)
        self.assertEqual(caught.exception.error_type, "InvalidProject")
        self.assertIn("models/bad.sql:1", caught.exception.message)
        self.assertIn("no_such_table", caught.exception.message)
        self.assertEqual(len(self.client.list_jobs()), before, "nothing was recorded")
        with self.assertRaises(FileNotFoundError):
            self.client.run(self.work / "no-such-folder", "main")

    def test_a_plan_and_a_dry_run_write_nothing(self) -> None:
        plan = self.client.plan(self.project, "main")
        self.assertEqual((plan.target, plan.namespace), ("main", "analytics"))
        self.assertEqual([(n.name, n.inputs, n.output_table) for n in plan.nodes],
                         [("fares", ["raw.trips"], "analytics.fares"),
                          ("fare_totals", ["fares"], "analytics.fare_totals")])
        head = self.client.get_branch("main").head
        job = self.client.run(self.project, "main", dry_run=True, on_log=None)
        self.assertEqual((job.state, job.landed), ("succeeded", None))
        self.assertEqual(job.node("fares").rows, 9)  # the default min_fare, 2.0
        self.assertEqual(self.client.get_branch("main").head, head)
        self.assertFalse(self.client.has_table("analytics.fares", "main"))

    def test_a_detached_run_is_waited_for_and_its_code_and_log_kept(self) -> None:
        self.client.create_branch("run-detached")
        job = self.client.run(self.project, "run-detached", detach=True)
        self.assertIn(job.state, ("queued", "running"))
        self.assertEqual(job.logs, [])
        seen: list[floe.LogLine] = []
        done = self.client.wait_job(job.id, timeout_s=STATE_WAIT_S, on_log=seen.append)
        self.assertEqual(done.state, "succeeded")
        self.assertEqual(done.logs, seen)
        self.assertEqual(self.client.job_logs(job.id), seen)
        with tarfile.open(fileobj=io.BytesIO(self.client.job_code(job.id))) as tar:
            self.assertEqual(sorted(tar.getnames()),
                             ["bauplan_project.yml", "models.py", "models/fares.sql"])
        runs = self.client.list_jobs(kind="run", target="run-detached")
        self.assertEqual([(j.id, j.state) for j in runs], [(job.id, "succeeded")])
        imports = self.client.list_jobs(kind="import")
        self.assertTrue(imports and all(j.kind == "import" for j in imports))

    def test_a_slow_run_times_a_wait_out_and_is_cancelled(self) -> None:
        slow = project(self.work, "slow", source="raw.trips", namespace="raw")
        (slow / "models.py").write_text(SLOW_MODEL)
        (slow / "models" / "fares.sql").unlink()
        self.client.create_branch("run-slow")
        before = self.client.get_branch("run-slow").head
        job = self.client.run(slow, "run-slow", detach=True)
        deadline = time.monotonic() + STATE_WAIT_S
        while not any(line.text == "sleeping" for line in self.client.job_logs(job.id)):
            self.assertLess(time.monotonic(), deadline, "the slow model never started")
            time.sleep(0.2)
        with self.assertRaises(TimeoutError):
            self.client.wait_job(job.id, timeout_s=1)
        cancelled = self.client.cancel_job(job.id)
        self.assertEqual(cancelled.state, "cancelled")
        self.assertEqual(self.client.wait_job(job.id, timeout_s=STATE_WAIT_S).state, "cancelled")
        self.assertEqual(self.client.get_branch("run-slow").head, before)

    def test_the_results_cache_reuses_outputs_unless_told_not_to(self) -> None:
        self.client.create_branch("run-cache")
        first = self.client.run(self.project, "run-cache", parameters={"min_fare": 7},
                                on_log=None)
        self.assertEqual([n.cached for n in first.nodes], [False, False])
        again = self.client.run(self.project, "run-cache", parameters={"min_fare": 7},
                                on_log=None)
        self.assertEqual(again.state, "succeeded")
        self.assertEqual([(n.cached, n.cached_from) for n in again.nodes],
                         [(True, first.id), (True, first.id)])
        self.assertNotIn("totalling 4 fares", [line.text for line in again.logs])
        fresh = self.client.run(self.project, "run-cache", parameters={"min_fare": 7},
                                cache=False, on_log=None)
        self.assertEqual([n.cached for n in fresh.nodes], [False, False])
        self.assertIn("totalling 4 fares", [line.text for line in fresh.logs])
        totals = self.client.query("SELECT n, total FROM analytics.fare_totals", "run-cache")
        self.assertEqual(totals.to_pylist(), [{"n": 4, "total": 34.0}])

    def test_a_landed_run_is_found_by_its_tables_and_reverted(self) -> None:
        self.client.create_branch("run-revert")
        before = self.client.get_branch("run-revert").head
        job = self.client.run(self.project, "run-revert", on_log=None)
        self.assertEqual(sorted(job.tables), ["analytics.fare_totals", "analytics.fares"])
        writers = self.client.list_jobs(table="analytics.fare_totals", target="run-revert")
        self.assertEqual([j.id for j in writers], [job.id])
        undone = self.client.revert_job(job.id)
        self.assertTrue(undone.created)
        self.assertEqual((undone.job_id, undone.branch, undone.reverted, undone.parent),
                         (job.id, "run-revert", job.landed, job.landed))
        self.assertFalse(self.client.has_table("analytics.fares", "run-revert"))
        self.assertEqual(self.client.diff(before, "run-revert"), [])
        commits = self.client.log("run-revert", run=job.id)
        self.assertEqual([c.hash for c in commits], [undone.head, job.landed])
        with self.assertRaises(floe.FloeError):
            self.client.revert_job("no-such-run")

    def test_an_unknown_job_is_not_found(self) -> None:
        with self.assertRaises(floe.NotFoundError) as caught:
            self.client.get_job("no-such-run")
        self.assertEqual(caught.exception.error_type, "RunNotFound")
        with self.assertRaises(floe.NotFoundError):
            self.client.cancel_job("no-such-run")


if __name__ == "__main__":
    unittest.main()
