"""The objects `floe.bauplan.Client` answers, shaped as Bauplan's `bauplan.schema` ones
(refs, commits, namespaces, tables, jobs) so that scripts reading their attributes run
unchanged. Each is built from the native `floe` model it stands for.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .. import models

# floe's job states as Bauplan's `JobState`, and the status text of a finished run.
_JOB_STATES = {
    "queued": "NOT_STARTED",
    "running": "RUNNING",
    "succeeded": "COMPLETE",
    "failed": "FAIL",
    "cancelled": "ABORT",
}
JOB_STATUS_TEXT = {"succeeded": "SUCCESS", "failed": "FAILED", "cancelled": "CANCELLED"}


class RefType(enum.Enum):
    """The kind of a ref."""

    BRANCH = "BRANCH"
    TAG = "TAG"
    DETACHED = "DETACHED"

    def __str__(self) -> str:
        return self.value


class Ref:
    """A ref at one commit. `str(ref)` is `name@hash`, the spec that reads exactly that
    commit, which is what passing a ref object to a read means."""

    type: RefType = RefType.DETACHED

    def __init__(self, name: str, hash: str) -> None:
        self.name = name
        self.hash = hash

    def __str__(self) -> str:
        return f"{self.name}@{self.hash}" if self.name else self.hash

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, hash={self.hash!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Ref) and (self.type, self.name, self.hash)
                == (other.type, other.name, other.hash))

    def __hash__(self) -> int:
        return hash((self.type, self.name, self.hash))


class Branch(Ref):
    """A branch at its head."""

    type = RefType.BRANCH


class Tag(Ref):
    """A tag at its commit."""

    type = RefType.TAG


class DetachedRef(Ref):
    """A commit named by its hash alone."""

    type = RefType.DETACHED

    def __init__(self, hash: str) -> None:
        super().__init__("", hash)


@dataclass(frozen=True)
class Actor:
    """A commit's author or committer (floe keeps one name, no email)."""

    name: str
    email: str | None = None


@dataclass(frozen=True)
class Commit:
    """A commit as Bauplan shows it. `ref` reads exactly this commit (`name@hash` on the
    ref the history was read from); `properties` are floe's, plus `bpln_job_id` (the job
    that landed it) where floe recorded `floe.run.id`."""

    hash: str
    ref: Ref
    message: str | None
    author: Actor
    committer: Actor
    authored_date: datetime
    parent_hashes: list[str]
    properties: dict[str, str]

    @property
    def subject(self) -> str | None:
        return self.message.split("\n", 1)[0] if self.message is not None else None

    @property
    def body(self) -> str | None:
        parts = (self.message or "").split("\n", 1)
        if len(parts) < 2:
            return None
        return parts[1].strip("\n") or None

    @property
    def authors(self) -> list[Actor]:
        return [self.author]

    @property
    def committed_date(self) -> datetime:
        return self.authored_date

    @property
    def signed_off_by(self) -> list[Actor]:
        return []

    @property
    def parent_ref(self) -> Ref | None:
        return DetachedRef(self.parent_hashes[0]) if self.parent_hashes else None

    @classmethod
    def from_floe(cls, c: models.Commit, ref_name: str | None, ref_kind: str = "branch"
                  ) -> Commit:
        properties = dict(c.properties)
        if "floe.run.id" in properties:
            properties.setdefault("bpln_job_id", properties["floe.run.id"])
        ref: Ref = DetachedRef(c.hash)
        if ref_name:
            ref = (Tag if ref_kind == "tag" else Branch)(ref_name, c.hash)
        return cls(
            hash=c.hash, ref=ref, message=c.message, author=Actor(c.author),
            committer=Actor(c.committer),
            authored_date=datetime.fromtimestamp(c.authored_at_ms / 1000, tz=timezone.utc),
            parent_hashes=list(c.parents), properties=properties,
        )


@dataclass(frozen=True)
class Namespace:
    """A namespace."""

    name: str


@dataclass(frozen=True)
class TableField:
    """A column of a table."""

    id: int
    name: str
    required: bool
    type: str


@dataclass(frozen=True)
class PartitionField:
    """A field of a table's partition spec."""

    name: str
    transform: str


class TableKind(enum.Enum):
    """floe's tables are all managed Iceberg tables."""

    Table = "TABLE"
    ExternalTable = "EXTERNAL_TABLE"


class Table:
    """A table. Its name is known at once; its metadata (fields, records, ...) is read
    from floe the first time one of those attributes is asked for."""

    kind = TableKind.Table

    def __init__(self, name: str, namespace: str, id: str,
                 load: Callable[[], models.Table]) -> None:
        self.name = name
        self.namespace = namespace
        self.id = id
        self._load = load
        self._table: models.Table | None = None

    def __repr__(self) -> str:
        return f"Table(name={self.name!r}, namespace={self.namespace!r})"

    @property
    def fqn(self) -> str:
        return f"{self.namespace}.{self.name}"

    def is_managed(self) -> bool:
        return True

    def is_external(self) -> bool:
        return False

    @property
    def floe_table(self) -> models.Table:
        """The native `floe.Table` (loaded once)."""
        if self._table is None:
            self._table = self._load()
        return self._table

    @property
    def fields(self) -> list[TableField]:
        return [TableField(f.id, f.name, f.required, f.type) for f in self.floe_table.fields]

    @property
    def partitions(self) -> list[PartitionField]:
        return [PartitionField(p.name, p.transform) for p in self.floe_table.partition_fields]

    @property
    def records(self) -> int | None:
        return self.floe_table.records

    @property
    def size(self) -> int | None:
        return self.floe_table.size_bytes

    @property
    def snapshots(self) -> int | None:
        return self.floe_table.snapshot_count

    @property
    def current_snapshot_id(self) -> int | None:
        return self.floe_table.current_snapshot_id

    @property
    def current_schema_id(self) -> int | None:
        value = self.floe_table.metadata.get("current-schema-id")
        return value if isinstance(value, int) else None

    @property
    def properties(self) -> dict[str, str]:
        return dict(self.floe_table.properties)

    @property
    def metadata_location(self) -> str | None:
        return self.floe_table.metadata_location

    @property
    def last_updated_at(self) -> datetime | None:
        return self.floe_table.last_updated_at


class JobState(enum.Enum):
    """A job's state, as Bauplan names it."""

    UNSPECIFIED = "UNSPECIFIED"
    NOT_STARTED = "NOT_STARTED"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    ABORT = "ABORT"
    FAIL = "FAIL"
    OTHER = "OTHER"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def from_floe(cls, state: str) -> JobState:
        return cls(_JOB_STATES.get(state, "OTHER"))

    def floe_state(self) -> str | None:
        """floe's name of this state (None for UNSPECIFIED and OTHER)."""
        return next((k for k, v in _JOB_STATES.items() if v == self.value), None)


class JobKind(enum.Enum):
    """A job's kind: floe's jobs are runs and imports."""

    UNSPECIFIED = "UNSPECIFIED"
    RUN = "RUN"
    QUERY = "QUERY"
    IMPORT_PLAN_CREATE = "IMPORT_PLAN_CREATE"
    IMPORT_PLAN_APPLY = "IMPORT_PLAN_APPLY"
    TABLE_PLAN_CREATE = "TABLE_PLAN_CREATE"
    TABLE_PLAN_CREATE_APPLY = "TABLE_PLAN_CREATE_APPLY"
    TABLE_IMPORT = "TABLE_IMPORT"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def from_floe(cls, kind: str) -> JobKind:
        return {"run": cls.RUN, "import": cls.TABLE_IMPORT}.get(kind, cls.UNSPECIFIED)

    def floe_kind(self) -> str | None:
        return {JobKind.RUN: "run", JobKind.TABLE_IMPORT: "import"}.get(self)


def _when(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


@dataclass(frozen=True)
class Job:
    """A job (a floe run or import record). `floe_job` is the native record."""

    id: str
    kind: JobKind
    status: JobState
    human_readable_status: str
    user: str
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    runner: str
    floe_job: models.Job = field(repr=False)

    @property
    def status_type(self) -> JobState:
        return self.status

    @property
    def kind_type(self) -> JobKind:
        return self.kind

    @classmethod
    def from_floe(cls, job: models.Job) -> Job:
        return cls(
            id=job.id, kind=JobKind.from_floe(job.kind), status=JobState.from_floe(job.state),
            human_readable_status=job.state, user=job.principal,
            created_at=_when(job.started_ms), started_at=_when(job.started_ms),
            finished_at=_when(job.finished_ms), runner="floe", floe_job=job,
        )


class JobLogLevel(enum.Enum):
    ERROR = "ERROR"
    WARN = "WARN"
    DEBUG = "DEBUG"
    INFO = "INFO"
    TRACE = "TRACE"


class JobLogStream(enum.Enum):
    STDOUT = "STDOUT"
    STDERR = "STDERR"


@dataclass(frozen=True)
class JobLogEvent:
    """One line of a job's log."""

    level: JobLogLevel
    stream: JobLogStream
    message: str
    node: str = ""

    @classmethod
    def from_floe(cls, line: models.LogLine) -> JobLogEvent:
        stream = JobLogStream.STDERR if line.stream in ("stderr", "error") else JobLogStream.STDOUT
        level = {"error": JobLogLevel.ERROR, "warn": JobLogLevel.WARN,
                 "warning": JobLogLevel.WARN}.get(line.stream, JobLogLevel.INFO)
        return cls(level, stream, line.text, line.node)


@dataclass(frozen=True)
class DAGNode:
    id: str
    name: str


@dataclass(frozen=True)
class DAGEdge:
    """An input of a model: another model (`source_model`) or a table (None)."""

    source_model: str | None
    destination_model: str


@dataclass(frozen=True)
class JobContext:
    """What a job ran: its project, ref, DAG, and (when asked for) logs and code."""

    id: str
    project_id: str | None
    project_name: str | None
    ref: str | None
    tx_ref: str | None
    dag_nodes: list[DAGNode]
    dag_edges: list[DAGEdge]
    logs: list[JobLogEvent]
    snapshot_dict: dict[str, str]

    @classmethod
    def from_floe(cls, job: models.Job, logs: list[JobLogEvent],
                  snapshot: dict[str, str]) -> JobContext:
        names = {n.name for n in job.nodes}
        edges = [DAGEdge(i if i in names else None, n.name) for n in job.nodes for i in n.inputs]
        return cls(
            id=job.id, project_id=job.project_id, project_name=job.project_name,
            ref=job.target, tx_ref=job.branch, dag_nodes=[DAGNode(n.name, n.name)
                                                          for n in job.nodes],
            dag_edges=edges, logs=logs, snapshot_dict=snapshot,
        )
