"""The states `floe.bauplan.Client` answers for jobs it starts (`run`, `import_data`) and
for `info()`, shaped as Bauplan's `bauplan.state` ones: `job_id`, `job_status` (`SUCCESS`,
`FAILED`, `CANCELLED`; None while a detached run has not ended), `error`, `ctx`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from .. import models
from .schema import JOB_STATUS_TEXT, JobLogEvent


@dataclass(frozen=True)
class RunExecutionContext:
    """The options a run was started with."""

    project_dir: str
    ref: str
    namespace: str
    dry_run: bool
    detach: bool
    strict: bool
    transaction: bool
    preview: str
    cache: str
    snapshot_id: str  # the BLAKE3 of the code floe kept for the run
    snapshot_uri: str  # where that code is served (`GET /api/v1/runs/{id}/code`)
    debug: bool = False


@dataclass(frozen=True)
class RunState:
    """A run's state. `job` is floe's native record (nodes with rows, tables and errors);
    `landed` is the commit the run landed as, once it succeeded."""

    job_id: str | None
    job_status: str | None
    error: str | None
    ctx: RunExecutionContext
    started_at_ns: int
    ended_at_ns: int | None
    tasks_started: dict[str, datetime]
    tasks_stopped: dict[str, datetime]
    user_logs: list[JobLogEvent]
    job: models.Job | None = field(default=None, repr=False)

    @property
    def duration_ns(self) -> int | None:
        return None if self.ended_at_ns is None else self.ended_at_ns - self.started_at_ns

    @property
    def duration(self) -> float | None:
        ns = self.duration_ns
        return None if ns is None else ns / 1e9

    @property
    def landed(self) -> str | None:
        return self.job.landed if self.job is not None else None

    @classmethod
    def from_job(cls, job: models.Job, ctx: RunExecutionContext, *, detached: bool) -> RunState:
        def at(ms: int | None) -> datetime | None:
            return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)

        started = {n.name: t for n in job.nodes if (t := at(n.started_ms)) is not None}
        stopped = {n.name: t for n in job.nodes if (t := at(n.finished_ms)) is not None}
        error = job.error
        if job.state == "failed" and not error:
            error = "; ".join(f"{n.name}: {n.error}" for n in job.nodes if n.error) or None
        return cls(
            job_id=job.id,
            job_status=None if detached and not job.ended else JOB_STATUS_TEXT.get(job.state),
            error=error,
            ctx=ctx,
            started_at_ns=job.started_ms * 1_000_000,
            ended_at_ns=None if job.finished_ms is None else job.finished_ms * 1_000_000,
            tasks_started=started,
            tasks_stopped=stopped,
            # What the models printed (floe's own lines are on its `info` stream).
            user_logs=[JobLogEvent.from_floe(line) for line in job.logs
                       if line.stream in ("stdout", "stderr")],
            job=job,
        )



@dataclass(frozen=True)
class TableDataImportContext:
    """The options an import was started with."""

    branch_name: str
    namespace: str
    table_name: str
    search_string: str
    import_duplicate_files: bool
    best_effort: bool = False
    continue_on_error: bool = False
    preview: str = "off"
    transformation_query: str | None = None


@dataclass(frozen=True)
class TableDataImportState:
    """An import's state. `result` is floe's native answer (files, rows, commit)."""

    job_id: str | None
    job_status: str | None
    error: str | None
    ctx: TableDataImportContext
    result: models.ImportResult | None = field(default=None, repr=False)


@dataclass(frozen=True)
class UserInfo:
    """Who the client acts as. floe has no accounts yet: every request is the principal
    `anonymous`, which is what this says."""

    id: str
    username: str
    first_name: str
    last_name: str
    full_name: str


@dataclass(frozen=True)
class RunnerNodeInfo:
    hostname: str


@dataclass(frozen=True)
class InfoState:
    client_version: str
    user: UserInfo | None
    organization: None
    runners: list[RunnerNodeInfo]
