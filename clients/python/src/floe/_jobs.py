"""The client's calls that move data: `query` (Arrow IPC from `/api/v1/query`),
`import_data` (multipart to `/api/v1/imports`), `run` (a project packed as `floe run`
packs it, posted to `/api/v1/runs`, its log followed with `?follow=true`) and the jobs
(floe's run records, imports included): list, get, cancel, wait, promote, revert.

A project travels as `floe run` sends it (cli/src/runs.rs): the project file at its root,
and every `.py`, `.sql` and `requirements.txt` under it, outside hidden folders and
`__pycache__`, as an uncompressed tar with fixed modes and times.
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import tarfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._http import Multipart, Part, Transport, segment
from .errors import FloeConnectionError, FloeError
from .models import ImportResult, Job, LogLine, Plan, RevertResult

if TYPE_CHECKING:
    import pyarrow

PROJECT_FILES = ("bauplan_project.yml", "bauplan_project.yaml")
ARROW_STREAM = "application/vnd.apache.arrow.stream"
# The formats `query_bytes` answers in, by name.
QUERY_FORMATS = {
    "arrow": ARROW_STREAM,
    "csv": "text/csv",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
# Times a followed log is opened again after its connection broke, at most.
FOLLOW_ATTEMPTS_MAX = 100
FOLLOW_PAUSE_S = 0.5
# Jobs listed per page (the server's maximum).
JOBS_PAGE_MAX = 1_000
JOB_PAGES_MAX = 10_000

LogCallback = Callable[[LogLine], None]


def print_log(line: LogLine) -> None:
    """The default log callback of `Client.run`: each line to standard output, without its
    timestamp (as `floe run` prints it)."""
    print(str(line), flush=True)


def project_files(project_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """The files of a project a run needs, by path relative to `project_dir` (`/`-joined):
    the project file, `.py`, `.sql` and `requirements.txt`; symbolic links are left out
    with a warning. FileNotFoundError if the folder has no `bauplan_project.yml`."""
    root = Path(project_dir)
    if not any((root / f).is_file() for f in PROJECT_FILES):
        raise FileNotFoundError(
            f"{root} has no bauplan_project.yml (or .yaml): name a project folder"
        )
    files: dict[str, Path] = {}
    pending: list[Path] = [Path()]
    while pending:
        rel = pending.pop()
        with os.scandir(root / rel) as entries:
            for entry in entries:
                path = rel / entry.name
                if entry.is_symlink():
                    warnings.warn(
                        f"{root / path} is a symbolic link and is not sent (a run takes files only)",
                        stacklevel=3,
                    )
                elif entry.is_dir():
                    if not entry.name.startswith(".") and entry.name != "__pycache__":
                        pending.append(path)
                elif entry.is_file() and (
                    (rel == Path() and entry.name in PROJECT_FILES)
                    or entry.name.endswith((".py", ".sql"))
                    or entry.name == "requirements.txt"
                ):
                    files["/".join(path.parts)] = root / path
    return dict(sorted(files.items()))


def pack(files: Mapping[str, Path]) -> bytes:
    """The project as an uncompressed tar: regular files, mode 0644, time 0, in name order
    (the same files give the same bytes, so a retried submission is recognized)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, path in sorted(files.items()):
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def parameter_text(value: str | int | float | bool) -> str:
    """A parameter as floe parses it (`--param k=v`): booleans as `true`/`false`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _upload_parts(data: Any) -> tuple[list[Part], list[str]]:
    """The uploads (multipart parts) and server-side sources an import names."""
    items = data if isinstance(data, (list, tuple)) else [data]
    parts: list[Part] = []
    sources: list[str] = []
    for i, item in enumerate(items):
        if type(item).__module__.startswith("pyarrow") and hasattr(item, "schema"):
            import pyarrow.parquet as pq

            buffer = io.BytesIO()
            pq.write_table(item, buffer)
            parts.append(Part("file", "application/octet-stream", data=buffer.getvalue(),
                              filename=f"table-{i}.parquet"))
            continue
        text = os.fspath(item)
        if "://" in text:
            sources.append(text)  # read by the server, under its --import-root folders
            continue
        paths = [text]
        if not os.path.exists(text) and glob.has_magic(text):
            paths = sorted(glob.glob(text))
            if not paths:
                raise FileNotFoundError(f"no file matches {text}")
        for path in paths:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path} is not a file")
            parts.append(Part("file", "application/octet-stream", path=path, filename=path))
    return parts, sources


class JobsMixin:
    """Queries, imports, runs and jobs; mixed into `floe.Client`."""

    _http: Transport

    # -- queries ------------------------------------------------------------------------

    def _query_body(self, sql: str, ref: str, namespace: str | None, max_rows: int | None,
                    timeout_ms: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"sql": sql, "ref": ref}
        for name, value in (("namespace", namespace), ("maxRows", max_rows),
                            ("timeoutMs", timeout_ms)):
            if value is not None:
                body[name] = value
        return body

    def query(
        self,
        sql: str,
        ref: str = "main",
        *,
        namespace: str | None = None,
        max_rows: int | None = None,
        timeout_ms: int | None = None,
    ) -> pyarrow.Table:
        """Runs one SQL query (SELECT, WITH, VALUES, EXPLAIN) at `ref` and answers its rows
        as a `pyarrow.Table`, streamed as Arrow IPC.

        Tables are `namespace.table`; a bare name is in `namespace` (default `default`).
        Bad SQL or an unknown table is a BadRequestError with the engine's message.
        """
        import pyarrow as pa
        import pyarrow.ipc as ipc

        body = self._query_body(sql, ref, namespace, max_rows, timeout_ms)
        with self._http.stream("POST", "/api/v1/query", json_body=body, accept=ARROW_STREAM,
                               timeout_s=self._http.timeout_s) as response:
            try:
                return ipc.open_stream(response).read_all()
            except (OSError, pa.ArrowException) as e:
                raise FloeConnectionError(f"the query's answer broke off: {e}") from e

    def query_bytes(
        self,
        sql: str,
        ref: str = "main",
        *,
        format: str = "csv",
        namespace: str | None = None,
        max_rows: int | None = None,
        timeout_ms: int | None = None,
    ) -> bytes:
        """A query's answer as the bytes of `format`: `csv` (with a header), `json` (an
        array of rows), `ndjson`, `arrow` (IPC stream) or `parquet`."""
        if format not in QUERY_FORMATS:
            raise ValueError(f"format is one of {', '.join(QUERY_FORMATS)}, got {format!r}")
        body = self._query_body(sql, ref, namespace, max_rows, timeout_ms)
        with self._http.stream("POST", "/api/v1/query", json_body=body,
                               accept=QUERY_FORMATS[format],
                               timeout_s=self._http.timeout_s) as response:
            try:
                return bytes(response.read())
            except OSError as e:
                raise FloeConnectionError(f"the query's answer broke off: {e}") from e

    # -- imports ------------------------------------------------------------------------

    def import_data(
        self,
        table: str,
        data: Any,
        *,
        branch: str = "main",
        mode: str | None = None,
        dry_run: bool = False,
        force: bool = False,
    ) -> ImportResult:
        """Imports Parquet or CSV files into table `namespace.table` on `branch`, landed
        as one commit by an import job.

        Args:
            data: A local file path (a glob like `data/*.parquet` is expanded), a
                `pyarrow.Table` (sent as Parquet), a `file://` URL or absolute server path
                read by the server under its `--import-root`, or a list of these.
            mode: `create`, `append` or `replace`. Default: create an absent table; an
                existing one is refused (BadRequestError) naming append or replace.
            dry_run: Infer and check the schema and answer the plan; change nothing.
            force: Import files even if they were imported into the table before.
        """
        parts, sources = _upload_parts(data)
        request: dict[str, Any] = {
            "table": table, "branch": branch, "dryRun": dry_run, "force": force,
            "sources": sources,
        }
        if mode is not None:
            request["mode"] = mode
        body = Multipart([Part("request", "application/json", data=json.dumps(request).encode()),
                          *parts])
        return ImportResult.from_json(self._http.write("POST", "/api/v1/imports",
                                                       multipart=body).json())

    # -- runs ---------------------------------------------------------------------------

    def _submit(
        self, project_dir: str | os.PathLike[str], ref: str, namespace: str | None,
        parameters: Mapping[str, str | int | float | bool | None] | None, *, plan: bool,
        dry_run: bool = False, strict: bool = False, transaction: bool = True,
        cache: bool = True, preview: str | None = None, timeout_s: float | None = None,
    ) -> dict[str, Any]:
        archive = pack(project_files(project_dir))
        options: dict[str, Any] = {
            "ref": ref,
            "params": {k: parameter_text(v) for k, v in (parameters or {}).items()
                       if v is not None},
            "dryRun": dry_run,
            "plan": plan,
            "strict": strict,
            "noTransaction": not transaction,
            "noCache": not cache,
            "preview": preview or "off",
        }
        if namespace is not None:
            options["namespace"] = namespace
        if timeout_s is not None:
            options["timeoutSeconds"] = max(1, math.ceil(timeout_s))  # never shortened
        body = Multipart([
            Part("options", "application/json", data=json.dumps(options).encode()),
            Part("project", "application/x-tar", data=archive, filename="project.tar"),
        ])
        answer: dict[str, Any] = self._http.write("POST", "/api/v1/runs", multipart=body).json()
        return answer

    def plan(
        self,
        project_dir: str | os.PathLike[str] = ".",
        ref: str = "main",
        *,
        namespace: str | None = None,
        parameters: Mapping[str, str | int | float | bool | None] | None = None,
    ) -> Plan:
        """The DAG a run of the project would execute, in order; nothing runs or is
        recorded. A project that does not plan is a BadRequestError naming every error
        with its file and line."""
        return Plan.from_json(self._submit(project_dir, ref, namespace, parameters, plan=True))

    def run(
        self,
        project_dir: str | os.PathLike[str] = ".",
        ref: str = "main",
        *,
        namespace: str | None = None,
        parameters: Mapping[str, str | int | float | bool | None] | None = None,
        dry_run: bool = False,
        strict: bool = False,
        transaction: bool = True,
        cache: bool = True,
        preview: str | None = None,
        timeout_s: float | None = None,
        detach: bool = False,
        on_log: LogCallback | None = print_log,
    ) -> Job:
        """Runs a project (a folder with `bauplan_project.yml`) on branch `ref`: it works
        on a temporary branch and lands as one commit if every model passes.

        Without `detach`, the log is followed until the run ends, each line handed to
        `on_log` (default: printed; None: silent) and kept in the answer's `logs`; Ctrl-C
        cancels the run, then re-raises. The answer is the job's record: `state`
        (`succeeded`, `failed`, `cancelled`; `queued` when detached), `landed` (the
        commit), `error`, `nodes` (each model's state, rows, output table and error). A
        failed run is returned, not raised: see `Job.raise_for_state()`. A project that
        does not plan is a BadRequestError and nothing is recorded.

        Args:
            namespace: Where bare table names resolve (else the project's default).
            parameters: Values of the project's parameters (`True` travels as `true`).
            dry_run: Execute, materialize nothing, land nothing.
            strict: Fail a model whose columns differ from its declared ones.
            transaction: False lands each table as it is written (not atomic).
            cache: False executes every model, reusing no earlier run's output (a node
                whose output came from floe's results cache is marked `cached`).
            preview: `head` or `tail`: show rows of each model in the log.
            timeout_s: The run's deadline on the server; past it the run is cancelled.
        """
        answer = self._submit(project_dir, ref, namespace, parameters, plan=False,
                              dry_run=dry_run, strict=strict, transaction=transaction,
                              cache=cache, preview=preview, timeout_s=timeout_s)
        job = Job.from_json(answer)
        if detach:
            return job
        try:
            return self._follow(job.id, on_log, None)
        except KeyboardInterrupt:
            self.cancel_job(job.id)
            raise

    def _follow(self, job_id: str, on_log: LogCallback | None, timeout_s: float | None) -> Job:
        """Follows a job's log until the job ended; its record, with the lines seen."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        seen: list[LogLine] = []
        path = f"/api/v1/runs/{segment(job_id)}/logs"
        for _ in range(FOLLOW_ATTEMPTS_MAX):
            remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
            try:
                with self._http.stream("GET", path, query={"follow": True},
                                       accept="text/plain", timeout_s=remaining) as response:
                    # The log is append-only: after a reconnection, skip what was seen.
                    for i, raw in enumerate(response):
                        if i < len(seen):
                            continue
                        line = LogLine.parse(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
                        seen.append(line)
                        if on_log is not None:
                            on_log(line)
            except (FloeConnectionError, OSError):
                pass  # the stream broke or timed out: look at the record, then go on
            job = self.get_job(job_id)
            if job.ended:
                job.logs = seen
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout_s}s")
            time.sleep(FOLLOW_PAUSE_S)
        raise FloeError(f"gave up following job {job_id} after {FOLLOW_ATTEMPTS_MAX} reconnections")

    # -- jobs ---------------------------------------------------------------------------

    def list_jobs(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        target: str | None = None,
        project: str | None = None,
        table: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """Jobs (runs and imports), oldest first, filtered by `state` (`queued`, `running`,
        `succeeded`, `failed`, `cancelled`), `kind` (`run`, `import`), `target` branch,
        `project` (a pipeline's id or name) or `table` (`namespace.table`: the jobs that
        write it)."""
        query: dict[str, Any] = {"state": state, "kind": kind, "target": target,
                                 "project": project, "table": table}
        jobs: list[Job] = []
        token: str | None = None
        for _ in range(JOB_PAGES_MAX):
            page = self._http.get("/api/v1/runs",
                                  {**query, "pageSize": JOBS_PAGE_MAX, "pageToken": token}).json()
            jobs.extend(Job.from_json(r) for r in page.get("runs", []))
            token = page.get("nextPageToken")
            if not token or (limit is not None and len(jobs) >= limit):
                break
        return jobs if limit is None else jobs[:limit]

    def get_job(self, job_id: str) -> Job:
        """The job `job_id` (NotFoundError once retention forgot it)."""
        return Job.from_json(self._http.get(f"/api/v1/runs/{segment(job_id)}").json())

    def cancel_job(self, job_id: str) -> Job:
        """Cancels the job and answers its record once it ended (`cancelled`, or as it
        ended if it ended first)."""
        return Job.from_json(
            self._http.write("POST", f"/api/v1/runs/{segment(job_id)}/cancel").json())

    def promote_job(self, job_id: str) -> Job:
        """Promotes a failed or cancelled job: its sealed commits may be used from now on."""
        return Job.from_json(
            self._http.write("POST", f"/api/v1/runs/{segment(job_id)}/promote").json())

    def revert_job(self, job_id: str, branch: str | None = None) -> RevertResult:
        """Undoes what a landed job wrote, as one commit on `branch` (default: the job's
        target): every table it wrote goes back to how it was before the job, or, if any
        of them changed since, none does (ConflictError `RunNotRevertible` naming them)."""
        answer = self._http.write("POST", f"/api/v1/runs/{segment(job_id)}/revert",
                                  json_body={"on": branch})
        return RevertResult.from_json(answer.json())

    def wait_job(self, job_id: str, *, timeout_s: float | None = None,
                 on_log: LogCallback | None = None) -> Job:
        """Waits until the job ended and answers its record (its `logs` are the lines
        followed). TimeoutError after `timeout_s`; the job itself goes on."""
        return self._follow(job_id, on_log, timeout_s)

    def job_logs(self, job_id: str) -> list[LogLine]:
        """The job's log as written so far."""
        text = self._http.get(f"/api/v1/runs/{segment(job_id)}/logs").data.decode(
            "utf-8", errors="replace")
        return [LogLine.parse(line) for line in text.splitlines() if line]

    def job_code(self, job_id: str) -> bytes:
        """A pipeline run's code snapshot, as submitted (a tar)."""
        return self._http.get(f"/api/v1/runs/{segment(job_id)}/code").data
