"""What the client returns: one frozen dataclass per kind of object floe's API answers
(refs, commits, namespaces, tables, jobs, ...), each built from the wire JSON by
`from_json`. Field names are floe's, in snake case; times are kept as the milliseconds floe
sends, with a `datetime` property beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .errors import JobFailedError


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _strs(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _props(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Ref:
    """A branch or a tag and the commit it points at."""

    name: str
    kind: str  # "branch" or "tag"
    head: str
    created_by: str
    created_at_ms: int

    @property
    def created_at(self) -> datetime | None:
        return _time(self.created_at_ms)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Ref:
        return cls(d["name"], d["kind"], d["head"], d.get("createdBy", ""), d.get("createdAtMs", 0))


@dataclass(frozen=True)
class Commit:
    """One commit: its hash, parents (first parent first), author and message."""

    hash: str
    parents: list[str]
    author: str
    committer: str
    message: str
    authored_at_ms: int
    properties: dict[str, str]
    generation: int

    @property
    def authored_at(self) -> datetime | None:
        return _time(self.authored_at_ms)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Commit:
        return cls(
            d["hash"],
            _strs(d.get("parents")),
            d.get("author", ""),
            d.get("committer", ""),
            d.get("message", ""),
            d.get("authoredAtMs", 0),
            _props(d.get("properties")),
            d.get("generation", 0),
        )


@dataclass(frozen=True)
class Change:
    """One key whose content differs between two commits."""

    key: str
    elements: list[str]
    kind: str  # "added", "modified" or "removed"
    content_kind: str  # "namespace", "iceberg-table" or "iceberg-view"
    before: str | None
    after: str | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Change:
        return cls(
            d["key"], _strs(d.get("elements")), d["kind"], d.get("contentKind", ""),
            d.get("before"), d.get("after"),
        )


@dataclass(frozen=True)
class CommitDetail:
    """A commit and the keys it changed against its first parent."""

    commit: Commit
    changes: list[Change]


@dataclass(frozen=True)
class ReflogEntry:
    """One move of one ref (newest first in a listing)."""

    seq: int
    ref: str
    kind: str
    operation: str  # create, delete, commit, merge, cherry-pick, revert or assign
    principal: str
    at_ms: int
    old: str | None
    new: str | None
    properties: dict[str, str]

    @property
    def at(self) -> datetime | None:
        return _time(self.at_ms)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ReflogEntry:
        return cls(
            d["seq"], d["ref"], d["kind"], d["operation"], d.get("principal", ""),
            d.get("atMs", 0), d.get("old"), d.get("new"), _props(d.get("properties")),
        )


@dataclass(frozen=True)
class Entry:
    """A key at a commit: a namespace, an Iceberg table or an Iceberg view."""

    key: str
    elements: list[str]
    kind: str  # "namespace", "iceberg-table" or "iceberg-view"
    content_id: str
    content_hash: str

    @property
    def name(self) -> str:
        """The last element (a table's own name)."""
        return self.elements[-1] if self.elements else self.key

    @property
    def namespace(self) -> str:
        """The elements before the last, joined by `.`."""
        return ".".join(self.elements[:-1])

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Entry:
        return cls(
            d["key"], _strs(d.get("elements")), d["kind"], d.get("contentId", ""),
            d.get("contentHash", ""),
        )


@dataclass(frozen=True)
class Namespace:
    """A namespace and its properties, as read (or written) at commit `head`."""

    name: str
    elements: list[str]
    content_id: str
    properties: dict[str, str]
    head: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any], head: str | None = None) -> Namespace:
        return cls(
            d["namespace"], _strs(d.get("elements")), d.get("contentId", ""),
            _props(d.get("properties")), head,
        )


@dataclass(frozen=True)
class CommitResult:
    """The outcome of a write that made (or would have made) one commit."""

    head: str
    parent: str
    created: bool  # False when nothing changed

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CommitResult:
        return cls(d["head"], d["parent"], bool(d.get("created", True)))


@dataclass(frozen=True)
class MergeResult:
    """What a merge did (or, for a dry run, would do) to its target."""

    kind: str  # fast-forward, merged, squashed or nothing-to-merge
    dry_run: bool
    source: str
    target_head: str
    head: str
    merge_bases: list[str]
    change_count: int
    changes: list[Change]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MergeResult:
        return cls(
            d["kind"], bool(d.get("dryRun")), d["source"], d["targetHead"], d["head"],
            _strs(d.get("mergeBases")), int(d.get("changeCount", 0)),
            [Change.from_json(c) for c in d.get("changes", [])],
        )


@dataclass(frozen=True)
class PropertiesResult:
    """What an update of a namespace's properties did."""

    head: str
    updated: list[str]
    removed: list[str]
    missing: list[str]  # removals that named no property


@dataclass(frozen=True)
class TableField:
    """A column of a table's current schema."""

    id: int
    name: str
    type: str  # Iceberg's type, as text: long, string, timestamptz, list<int>, ...
    required: bool


@dataclass(frozen=True)
class PartitionField:
    """A field of a table's default partition spec."""

    name: str
    transform: str
    source_id: int


@dataclass(frozen=True)
class Table:
    """An Iceberg table at a ref, from its current metadata."""

    namespace: str
    name: str
    ref: str
    uuid: str
    location: str
    metadata_location: str | None
    fields: list[TableField]
    partition_fields: list[PartitionField]
    properties: dict[str, str]
    current_snapshot_id: int | None
    snapshot_count: int
    records: int | None  # rows in the current snapshot
    data_files: int | None
    size_bytes: int | None
    last_updated_ms: int | None
    metadata: dict[str, Any] = field(repr=False)

    @property
    def fqn(self) -> str:
        """`namespace.name`."""
        return f"{self.namespace}.{self.name}"

    @property
    def last_updated_at(self) -> datetime | None:
        return _time(self.last_updated_ms)

    @classmethod
    def from_json(cls, namespace: str, name: str, ref: str, d: dict[str, Any]) -> Table:
        m = d.get("metadata") or {}
        schema_id = m.get("current-schema-id")
        schema: dict[str, Any] = next(
            (s for s in m.get("schemas", []) if s.get("schema-id") == schema_id), {})
        spec_id = m.get("default-spec-id")
        spec: dict[str, Any] = next(
            (s for s in m.get("partition-specs", []) if s.get("spec-id") == spec_id), {})
        current = m.get("current-snapshot-id")
        current = current if isinstance(current, int) and current >= 0 else None
        snapshots = m.get("snapshots") or []
        summary: dict[str, Any] = next(
            (s.get("summary", {}) for s in snapshots if s.get("snapshot-id") == current), {}
        )

        def count(key: str) -> int | None:
            value = summary.get(key)
            return int(value) if isinstance(value, str) and value.isdigit() else None

        return cls(
            namespace=namespace,
            name=name,
            ref=ref,
            uuid=m.get("table-uuid", ""),
            location=m.get("location", ""),
            metadata_location=d.get("metadata-location"),
            fields=[
                TableField(f["id"], f["name"], type_text(f["type"]), bool(f.get("required")))
                for f in schema.get("fields", [])
            ],
            partition_fields=[
                PartitionField(f["name"], f["transform"], f["source-id"])
                for f in spec.get("fields", [])
            ],
            properties=_props(m.get("properties")),
            current_snapshot_id=current,
            snapshot_count=len(snapshots),
            records=count("total-records") if current is not None else 0,
            data_files=count("total-data-files") if current is not None else 0,
            size_bytes=count("total-files-size") if current is not None else 0,
            last_updated_ms=m.get("last-updated-ms"),
            metadata=m,
        )


def type_text(t: Any) -> str:
    """An Iceberg type as text (nested types spelled out, as `floe table show` does)."""
    if isinstance(t, str):
        return t
    if isinstance(t, dict):
        kind = t.get("type")
        if kind == "list":
            return f"list<{type_text(t.get('element'))}>"
        if kind == "map":
            return f"map<{type_text(t.get('key'))}, {type_text(t.get('value'))}>"
        if kind == "struct":
            inner = ", ".join(f"{f['name']}: {type_text(f['type'])}" for f in t.get("fields", []))
            return f"struct<{inner}>"
    return str(t)


@dataclass(frozen=True)
class ImportFile:
    """What an import did (or would do) with one file."""

    name: str
    format: str  # parquet or csv
    action: str  # copy (added as it is) or convert (rewritten)
    rows: int
    bytes: int
    blake3: str
    locations: list[str]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ImportFile:
        return cls(
            d.get("name", ""), d.get("format", ""), d.get("action", ""), int(d.get("rows", 0)),
            int(d.get("bytes", 0)), d.get("blake3", ""), _strs(d.get("locations")),
        )


@dataclass(frozen=True)
class ImportResult:
    """An import's outcome: the table's schema, each file, and (unless a dry run) the job
    that landed it and its commit."""

    table: str
    branch: str
    mode: str  # create, append or replace
    dry_run: bool
    schema: dict[str, Any]  # the Iceberg schema, as floe answers it
    files: list[ImportFile]
    rows: int
    job_id: str | None
    commit: str | None
    snapshot_id: int | None
    warnings: list[str]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ImportResult:
        run = d.get("run") or {}
        return cls(
            d.get("table", ""), d.get("branch", ""), d.get("mode", ""), bool(d.get("dryRun")),
            d.get("schema") or {}, [ImportFile.from_json(f) for f in d.get("files", [])],
            int(d.get("rows", 0)), run.get("id"), d.get("commit"), d.get("snapshotId"),
            _strs(d.get("warnings")),
        )


@dataclass(frozen=True)
class LogLine:
    """One line of a job's log: `<time> <node> <stream> <text>`."""

    time: str
    node: str
    stream: str  # info, stdout, stderr, error, ...
    text: str

    def __str__(self) -> str:
        return f"{self.node} {self.stream} {self.text}"

    @classmethod
    def parse(cls, raw: str) -> LogLine:
        parts = raw.split(" ", 3)
        if len(parts) < 4:
            return cls("", "", "", raw)
        return cls(parts[0], parts[1], parts[2], parts[3])


@dataclass(frozen=True)
class JobNode:
    """One node (model or expectation) of a pipeline run, as its record keeps it."""

    name: str
    kind: str  # sql, python, expectation
    state: str  # pending, running, succeeded, failed, skipped, ...
    file: str
    line: int
    inputs: list[str]
    materialization: str
    output_table: str | None
    rows: int | None
    bytes: int | None
    started_ms: int | None
    finished_ms: int | None
    error: str | None
    passed: bool | None  # an expectation's answer
    schema: list[dict[str, str]]
    cached: bool  # its output was an earlier run's (floe's results cache)
    cached_from: str | None  # that run

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> JobNode:
        error = d.get("error")
        return cls(
            d.get("name", ""), d.get("kind", ""), d.get("state", ""), d.get("file", ""),
            int(d.get("line", 0)), _strs(d.get("inputs")), d.get("materialization", ""),
            d.get("outputTable"), d.get("rows"), d.get("bytes"), d.get("startedMs"),
            d.get("finishedMs"),
            error.get("message") if isinstance(error, dict) else error,
            d.get("passed"), list(d.get("schema") or []), bool(d.get("cached")),
            d.get("cachedFrom"),
        )


# A job's states: the first two are live, the last three are ends.
LIVE_STATES = ("queued", "running")


@dataclass
class Job:
    """A job: a pipeline run (`kind == "run"`) or an import (`kind == "import"`), as floe's
    run record keeps it. `logs` holds the log lines `Client.run` followed, if any."""

    id: str
    kind: str
    state: str  # queued, running, succeeded, failed or cancelled
    target: str
    fork: str
    branch: str
    source: str
    principal: str
    started_ms: int
    finished_ms: int | None
    landed: str | None
    error: str | None
    sealed: bool
    promoted: bool
    failure: str | None  # planning, execution, conflict, server or cancelled
    project_id: str | None
    project_name: str | None
    namespace: str | None
    parameters: dict[str, Any]
    nodes: list[JobNode]
    tables: list[str]  # the tables it writes (`namespace.table`)
    pipeline: dict[str, Any] | None = field(repr=False)
    logs: list[LogLine] = field(default_factory=list, repr=False)

    @property
    def ended(self) -> bool:
        return self.state not in LIVE_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"

    @property
    def started_at(self) -> datetime | None:
        return _time(self.started_ms)

    @property
    def finished_at(self) -> datetime | None:
        return _time(self.finished_ms)

    def node(self, name: str) -> JobNode:
        """The node called `name` (KeyError if the run has none)."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"job {self.id} has no node {name!r}")

    def raise_for_state(self) -> Job:
        """Raises `JobFailedError` unless the job succeeded (or is still live); returns the
        job, so that `client.run(...).raise_for_state()` reads as one step."""
        if self.state in ("failed", "cancelled"):
            failed = [f"{n.name}: {n.error}" for n in self.nodes if n.error]
            detail = "; ".join(failed) or self.error or "no error recorded"
            raise JobFailedError(f"job {self.id} {self.state}: {detail}", job=self)
        return self

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Job:
        pipeline = d.get("pipeline") if isinstance(d.get("pipeline"), dict) else None
        p = pipeline or {}
        return cls(
            id=d["id"],
            kind=d.get("kind", ""),
            state=d.get("state", ""),
            target=d.get("target", ""),
            fork=d.get("fork", ""),
            branch=d.get("branch", ""),
            source=d.get("source", ""),
            principal=d.get("principal", ""),
            started_ms=d.get("startedMs", 0),
            finished_ms=d.get("finishedMs"),
            landed=d.get("landed"),
            error=d.get("error"),
            sealed=bool(d.get("sealed")),
            promoted=bool(d.get("promoted")),
            failure=p.get("failure"),
            project_id=p.get("projectId"),
            project_name=p.get("projectName"),
            namespace=p.get("namespace"),
            parameters=dict(p.get("parameters") or {}),
            nodes=[JobNode.from_json(n) for n in p.get("nodes", [])],
            tables=_strs(d.get("tables")),
            pipeline=pipeline,
        )


@dataclass(frozen=True)
class RevertResult:
    """A job's landing undone: the commit made on `branch` (`created` is False when every
    table was already as before the job)."""

    head: str
    parent: str
    created: bool
    job_id: str
    branch: str
    reverted: str  # the landing commit undone

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RevertResult:
        return cls(d["head"], d["parent"], bool(d.get("created", True)), d.get("run", ""),
                   d.get("branch", ""), d.get("reverted", ""))


@dataclass(frozen=True)
class PlanNode:
    """A node of a planned run: what it reads and what it writes."""

    name: str
    kind: str
    file: str
    line: int
    inputs: list[str]
    materialization: str
    output_table: str | None


@dataclass(frozen=True)
class Plan:
    """A project's DAG, in the order it would run (nothing is recorded or run)."""

    target: str
    namespace: str
    parameters: dict[str, Any]
    nodes: list[PlanNode]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Plan:
        return cls(
            d.get("target", ""), d.get("namespace", ""), dict(d.get("parameters") or {}),
            [
                PlanNode(
                    n.get("name", ""), n.get("kind", ""), n.get("file", ""),
                    int(n.get("line", 0)), _strs(n.get("inputs")),
                    n.get("materialization", ""), n.get("outputTable"),
                )
                for n in d.get("nodes", [])
            ],
        )
