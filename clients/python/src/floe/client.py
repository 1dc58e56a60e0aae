"""`floe.Client`: floe's HTTP API (`/api/v1`, and the Iceberg REST catalog for a table's
metadata) as typed Python calls. Refs, history, merges, namespaces and tables live here;
queries, imports, runs and jobs are in `_jobs.py` (mixed in).

Conventions: a call that reads takes `ref` (any ref spec: `name`, `name@hash`, a hash,
`spec~N`, `name*time`; default `main`); a call that writes takes `branch` (or `into` for a
merge). Listings page through the server's pages for you, up to `limit` items.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from ._http import DEFAULT_URL, REQUEST_TIMEOUT_S, Transport, segment
from ._jobs import JobsMixin
from .errors import BadRequestError, FloeError, NotFoundError
from .models import (
    Change,
    Commit,
    CommitDetail,
    CommitResult,
    Entry,
    MergeResult,
    Namespace,
    PropertiesResult,
    Ref,
    ReflogEntry,
    Table,
)

# Pages any one listing reads at most, whatever `limit` says: a bound on every loop.
PAGES_MAX = 10_000
# The largest page each listing asks for (the server's maxima).
REFS_PAGE_MAX = 1_000
LOG_PAGE_MAX = 1_000
KEYS_PAGE_MAX = 10_000
# The branches jobs work on; only floe's executor writes them.
RUN_BRANCH_PREFIX = "floe-run/"

NamespaceName = str | Sequence[str]


def namespace_elements(name: NamespaceName) -> list[str]:
    """A namespace's elements: `"a.b"` or `["a", "b"]` (an element may then hold a dot)."""
    elements = name.split(".") if isinstance(name, str) else [str(e) for e in name]
    if not elements or any(not e for e in elements):
        raise ValueError(f"a namespace is one or more non-empty names, got {name!r}")
    return elements


def table_elements(table: str | Sequence[str], namespace: NamespaceName | None = None) -> list[str]:
    """A table's key elements: `"ns.table"`, `["ns", "table"]`, or a bare name with
    `namespace`."""
    elements = table.split(".") if isinstance(table, str) else [str(e) for e in table]
    if namespace is not None and len(elements) == 1:
        elements = namespace_elements(namespace) + elements
    if len(elements) < 2 or any(not e for e in elements):
        raise ValueError(f"name a table as namespace.table, got {table!r}")
    return elements


def _namespace_path(elements: Sequence[str]) -> str:
    # U+001F separates elements in a path segment, so an element may hold a dot.
    return segment("\x1f".join(elements))


def _rfc3339(value: str | datetime | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    when = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return when.isoformat()


def _message_header(message: str | None) -> dict[str, str] | None:
    """A commit message for the Iceberg REST catalog, which takes it in a header: floe reads
    only visible ASCII there, so anything else is refused here rather than dropped there."""
    if message is None:
        return None
    if not all(" " <= c <= "~" for c in message):
        raise ValueError(
            f"a table's commit message travels in an HTTP header: one line of ASCII, got {message!r}"
        )
    return {"Floe-Commit-Message": message}


class Client(JobsMixin):
    """A client of one floe server.

    Args:
        url: The server (default: `FLOE_URL`, else `http://127.0.0.1:8181`).
        token: Sent as `Authorization: Bearer <token>` (default: `FLOE_TOKEN`, if set).
        timeout_s: The deadline of each request in seconds (None: none). Following a
            run's log has no deadline of its own.

    Example:
        >>> client = floe.Client("http://127.0.0.1:8181")
        >>> client.create_branch("dev", from_ref="main")
        >>> client.query("SELECT count(*) AS n FROM db.sales", ref="dev")
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        timeout_s: float | None = REQUEST_TIMEOUT_S,
    ) -> None:
        base = url or os.environ.get("FLOE_URL") or DEFAULT_URL
        self._http = Transport(
            base, token=token or os.environ.get("FLOE_TOKEN") or None, timeout_s=timeout_s
        )

    @property
    def url(self) -> str:
        """The server's URL."""
        return self._http.base_url

    def __repr__(self) -> str:
        return f"floe.Client({self.url!r})"

    # -- paging -------------------------------------------------------------------------

    def _paged(
        self, path: str, query: dict[str, Any], key: str, limit: int | None, page_max: int
    ) -> list[dict[str, Any]]:
        """Every item of a paged listing, up to `limit`."""
        if limit is not None and limit <= 0:
            return []
        items: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(PAGES_MAX):
            want = page_max if limit is None else min(page_max, limit - len(items))
            page = self._http.get(path, {**query, "pageSize": want, "pageToken": token}).json()
            items.extend(page.get(key, []))
            token = page.get("nextPageToken")
            if not token or (limit is not None and len(items) >= limit):
                break
        return items if limit is None else items[:limit]

    # -- refs ---------------------------------------------------------------------------

    def list_refs(self, kind: str | None = None, *, limit: int | None = None) -> list[Ref]:
        """Branches and tags in name order (`kind`: `"branch"` or `"tag"` for one kind)."""
        items = self._paged("/api/v1/refs", {"kind": kind}, "refs", limit, REFS_PAGE_MAX)
        return [Ref.from_json(r) for r in items]

    def list_branches(self, *, all: bool = False) -> list[Ref]:
        """Every branch but the `floe-run/` ones a job works on (with `all`, those too),
        as `floe branch list [--all]` shows them."""
        return [r for r in self.list_refs("branch")
                if all or not r.name.startswith(RUN_BRANCH_PREFIX)]

    def list_tags(self) -> list[Ref]:
        """Every tag."""
        return self.list_refs("tag")

    def get_ref(self, name: str) -> Ref:
        """The branch or tag `name` (NotFoundError if there is none)."""
        return Ref.from_json(self._http.get(f"/api/v1/refs/{segment(name)}").json())

    def get_branch(self, name: str) -> Ref:
        """The branch `name`; a tag of that name is a BadRequestError."""
        return self._ref_of_kind(name, "branch")

    def get_tag(self, name: str) -> Ref:
        """The tag `name`; a branch of that name is a BadRequestError."""
        return self._ref_of_kind(name, "tag")

    def _ref_of_kind(self, name: str, kind: str) -> Ref:
        ref = self.get_ref(name)
        if ref.kind != kind:
            raise BadRequestError(
                f"{name} is a {ref.kind}, not a {kind}",
                status=400,
                error_type="NotABranch" if kind == "branch" else "NotATag",
            )
        return ref

    def has_branch(self, name: str) -> bool:
        """Whether a branch `name` exists."""
        return self._has_ref(name, "branch")

    def has_tag(self, name: str) -> bool:
        """Whether a tag `name` exists."""
        return self._has_ref(name, "tag")

    def _has_ref(self, name: str, kind: str) -> bool:
        try:
            return self.get_ref(name).kind == kind
        except NotFoundError as e:
            if e.error_type in ("RefNotFound", "NotFound"):
                return False
            raise

    def create_branch(self, name: str, from_ref: str = "main") -> Ref:
        """Creates branch `name` at `from_ref` (any ref spec); ConflictError if it exists."""
        return self._create_ref(name, from_ref, "branch")

    def create_tag(self, name: str, from_ref: str = "main") -> Ref:
        """Creates tag `name` at `from_ref` (any ref spec); ConflictError if it exists."""
        return self._create_ref(name, from_ref, "tag")

    def _create_ref(self, name: str, from_ref: str, kind: str) -> Ref:
        body = {"name": name, "from": from_ref, "kind": kind}
        return Ref.from_json(self._http.write("POST", "/api/v1/refs", json_body=body).json())

    def delete_branch(self, name: str, *, expected_head: str | None = None) -> None:
        """Deletes branch `name` (refused for the default branch, `main`)."""
        self._delete_ref(name, "branch", expected_head)

    def delete_tag(self, name: str, *, expected_head: str | None = None) -> None:
        """Deletes tag `name`."""
        self._delete_ref(name, "tag", expected_head)

    def _delete_ref(self, name: str, kind: str, expected_head: str | None) -> None:
        # floe deletes a ref by name whatever its kind; checking first keeps delete_tag
        # from deleting a branch.
        self._ref_of_kind(name, kind)
        self._http.write(
            "DELETE", f"/api/v1/refs/{segment(name)}", query={"expectedHead": expected_head}
        )

    def reset_branch(self, name: str, to: str, *, expected_head: str | None = None) -> Ref:
        """Points branch `name` at the commit `to` (any ref spec) names; the reflog keeps
        the old head."""
        body = {"target": to, "expectedHead": expected_head}
        self._http.write("PUT", f"/api/v1/refs/{segment(name)}", json_body=body)
        return self.get_ref(name)

    def reflog(self, ref: str | None = None, *, limit: int | None = 100) -> list[ReflogEntry]:
        """Ref moves, newest first (of `ref` only, if given)."""
        items = self._paged("/api/v1/reflog", {"ref": ref}, "entries", limit, REFS_PAGE_MAX)
        return [ReflogEntry.from_json(e) for e in items]

    # -- history ------------------------------------------------------------------------

    def log(
        self,
        ref: str = "main",
        *,
        limit: int | None = None,
        author: str | None = None,
        grep: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        path: str | None = None,
        run: str | None = None,
    ) -> list[Commit]:
        """First-parent history of `ref`, newest first.

        Args:
            limit: At most this many commits (None: all).
            author: Case-insensitive substring of the author or committer.
            grep: Case-insensitive substring of the message.
            since: Authored at or after (RFC 3339 text, or a datetime; naive means UTC).
            until: Authored at or before.
            path: Only commits that changed a key at or under this prefix (`db.sales`).
            run: Only the commits of this job: its landing (or its parts, without a
                transaction) and any revert of it.
        """
        query = {
            "author": author, "grep": grep, "since": _rfc3339(since), "until": _rfc3339(until),
            "path": path, "run": run,
        }
        items = self._paged(f"/api/v1/trees/{segment(ref)}/log", query, "commits", limit,
                            LOG_PAGE_MAX)
        return [Commit.from_json(c) for c in items]

    def get_commit(self, spec: str) -> CommitDetail:
        """One commit (a hash, a unique prefix of 8+ characters, or any ref spec) and the
        keys it changed against its first parent."""
        path = f"/api/v1/commits/{segment(spec)}"
        first = self._http.get(path, {"pageSize": KEYS_PAGE_MAX}).json()
        changes = list(first.get("changes", []))
        token = first.get("nextPageToken")
        for _ in range(PAGES_MAX):
            if not token:
                break
            page = self._http.get(path, {"pageSize": KEYS_PAGE_MAX, "pageToken": token}).json()
            changes.extend(page.get("changes", []))
            token = page.get("nextPageToken")
        return CommitDetail(Commit.from_json(first["commit"]),
                            [Change.from_json(c) for c in changes])

    def diff(self, from_ref: str, to_ref: str, *, prefix: str | None = None) -> list[Change]:
        """What changes from `from_ref` to `to_ref`, in key order."""
        path = f"/api/v1/diff/{segment(from_ref)}/{segment(to_ref)}"
        items = self._paged(path, {"prefix": prefix}, "changes", None, KEYS_PAGE_MAX)
        return [Change.from_json(c) for c in items]

    def entries(self, ref: str = "main", *, prefix: str | None = None) -> list[Entry]:
        """Every key (namespace, table, view) at `ref`, in key order; with `prefix`, only
        keys at or under it."""
        path = f"/api/v1/trees/{segment(ref)}/entries"
        items = self._paged(path, {"prefix": prefix}, "entries", None, KEYS_PAGE_MAX)
        return [Entry.from_json(e) for e in items]

    # -- merges -------------------------------------------------------------------------

    def merge(
        self,
        source: str,
        into: str = "main",
        *,
        message: str | None = None,
        strategy: str | None = None,
        dry_run: bool = False,
        expected_head: str | None = None,
        on_conflict: str | None = None,
        resolutions: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> MergeResult:
        """Merges `source` (any ref spec) into branch `into`: a fast-forward when possible,
        else a merge commit. A conflict is a ConflictError whose `conflicts` name the keys.

        Args:
            strategy: `normal` (default), `squash`, `ff-only` or `no-ff`.
            on_conflict: For keys both sides changed: `fail` (default), `source`, `target`.
            resolutions: Per key (`db.sales`): `source`, `target` or `fail`.
            properties: Commit properties (names starting `floe.` are floe's own).
        """
        body: dict[str, Any] = {"source": source, "dryRun": dry_run}
        for name, value in (
            ("message", message), ("strategy", strategy), ("expectedHead", expected_head),
            ("onConflict", on_conflict),
        ):
            if value is not None:
                body[name] = value
        if resolutions:
            body["resolutions"] = dict(resolutions)
        if properties:
            body["properties"] = dict(properties)
        answer = self._http.write("POST", f"/api/v1/trees/{segment(into)}/merge", json_body=body)
        return MergeResult.from_json(answer.json())

    def cherry_pick(
        self, commit: str, branch: str, *, message: str | None = None,
        expected_head: str | None = None,
    ) -> CommitResult:
        """Applies `commit`'s change to `branch` as one commit."""
        return self._replay("cherry-pick", commit, branch, message, expected_head)

    def revert(
        self, commit: str, branch: str, *, message: str | None = None,
        expected_head: str | None = None,
    ) -> CommitResult:
        """Undoes `commit`'s change on `branch` as one commit."""
        return self._replay("revert", commit, branch, message, expected_head)

    def _replay(
        self, verb: str, commit: str, branch: str, message: str | None, expected: str | None
    ) -> CommitResult:
        body = {"commit": commit, "message": message, "expectedHead": expected}
        answer = self._http.write("POST", f"/api/v1/trees/{segment(branch)}/{verb}",
                                  json_body=body)
        return CommitResult.from_json(answer.json())

    # -- namespaces ---------------------------------------------------------------------

    def list_namespaces(
        self, ref: str = "main", *, parent: NamespaceName | None = None,
        children_only: bool = False,
    ) -> list[Namespace]:
        """Namespaces at `ref` in key order (under `parent`; only direct children with
        `children_only`)."""
        query = {
            "parent": ".".join(namespace_elements(parent)) if parent is not None else None,
            "childrenOnly": children_only or None,
        }
        path = f"/api/v1/trees/{segment(ref)}/namespaces"
        items = self._paged(path, query, "namespaces", None, REFS_PAGE_MAX)
        return [Namespace.from_json(n) for n in items]

    def get_namespace(self, name: NamespaceName, ref: str = "main") -> Namespace:
        """The namespace `name` at `ref` (NotFoundError if absent)."""
        path = f"/api/v1/trees/{segment(ref)}/namespaces/{_namespace_path(namespace_elements(name))}"
        answer = self._http.get(path).json()
        return Namespace.from_json(answer["namespace"], answer.get("head"))

    def has_namespace(self, name: NamespaceName, ref: str = "main") -> bool:
        """Whether namespace `name` exists at `ref` (a missing ref is still an error)."""
        try:
            self.get_namespace(name, ref)
            return True
        except NotFoundError as e:
            if e.error_type == "NamespaceNotFound":
                return False
            raise
        except FloeError as e:
            if e.error_type == "NotANamespace":  # the key holds a table or view
                return False
            raise

    def create_namespace(
        self, name: NamespaceName, branch: str = "main", *,
        properties: Mapping[str, str] | None = None, message: str | None = None,
    ) -> Namespace:
        """Creates namespace `name` on `branch` in one commit (its parent must exist)."""
        body: dict[str, Any] = {"namespace": namespace_elements(name)}
        if properties:
            body["properties"] = dict(properties)
        if message is not None:
            body["message"] = message
        answer = self._http.write(
            "POST", f"/api/v1/trees/{segment(branch)}/namespaces", json_body=body
        ).json()
        return Namespace.from_json(answer["namespace"], answer.get("head"))

    def drop_namespace(self, name: NamespaceName, branch: str = "main") -> CommitResult:
        """Drops the empty namespace `name` on `branch` in one commit."""
        path = f"/api/v1/trees/{segment(branch)}/namespaces/{_namespace_path(namespace_elements(name))}"
        return CommitResult.from_json(self._http.write("DELETE", path).json())

    def update_namespace_properties(
        self, name: NamespaceName, branch: str = "main", *,
        updates: Mapping[str, str] | None = None, removals: Sequence[str] | None = None,
        message: str | None = None,
    ) -> PropertiesResult:
        """Sets `updates` and removes `removals` of namespace `name`'s properties."""
        path = (f"/api/v1/trees/{segment(branch)}/namespaces/"
                f"{_namespace_path(namespace_elements(name))}/properties")
        body: dict[str, Any] = {"updates": dict(updates or {}), "removals": list(removals or [])}
        if message is not None:
            body["message"] = message
        d = self._http.write("POST", path, json_body=body).json()
        return PropertiesResult(d["head"], d.get("updated", []), d.get("removed", []),
                                d.get("missing", []))

    # -- tables -------------------------------------------------------------------------

    def list_tables(self, ref: str = "main", *, namespace: NamespaceName | None = None
                    ) -> list[Entry]:
        """The Iceberg tables at `ref` (at or under `namespace`), in key order."""
        prefix = ".".join(namespace_elements(namespace)) if namespace is not None else None
        return [e for e in self.entries(ref, prefix=prefix) if e.kind == "iceberg-table"]

    def has_table(self, table: str | Sequence[str], ref: str = "main") -> bool:
        """Whether table `namespace.table` exists at `ref` (a missing ref is an error)."""
        elements = table_elements(table)
        key = ".".join(elements)
        return any(e.elements == elements and e.kind == "iceberg-table"
                   for e in self.entries(ref, prefix=key))

    def _table_path(self, ref: str, elements: Sequence[str]) -> str:
        return (f"/iceberg/v1/{segment(ref)}/namespaces/{_namespace_path(elements[:-1])}"
                f"/tables/{segment(elements[-1])}")

    def get_table(self, table: str | Sequence[str], ref: str = "main") -> Table:
        """Table `namespace.table` at `ref`: its schema, partitioning, properties and
        current snapshot (rows, files, bytes), from the Iceberg REST catalog."""
        elements = table_elements(table)
        answer = self._http.get(self._table_path(ref, elements)).json()
        return Table.from_json(".".join(elements[:-1]), elements[-1], ref, answer)

    def create_table(
        self, table: str | Sequence[str], schema: Mapping[str, Any], branch: str = "main", *,
        properties: Mapping[str, str] | None = None, message: str | None = None,
    ) -> Table:
        """Creates the empty table `namespace.table` on `branch` with an Iceberg `schema`
        (a dict as Iceberg spells it, e.g. `ImportResult.schema` of a dry-run import)."""
        elements = table_elements(table)
        path = self._table_path(branch, elements).rsplit("/", 1)[0]
        body: dict[str, Any] = {"name": elements[-1], "schema": dict(schema)}
        if properties:
            body["properties"] = dict(properties)
        answer = self._http.write(
            "POST", path, json_body=body, headers=_message_header(message)
        ).json()
        return Table.from_json(".".join(elements[:-1]), elements[-1], branch, answer)

    def drop_table(self, table: str | Sequence[str], branch: str = "main", *,
                   message: str | None = None) -> None:
        """Drops table `namespace.table` from `branch` in one commit (its files stay:
        other refs may read them)."""
        self._http.write("DELETE", self._table_path(branch, table_elements(table)),
                         headers=_message_header(message))
