"""`floe.bauplan.Client`: the calls Bauplan's `bauplan.Client` offers that orchestration
scripts make, with Bauplan's names, argument names, argument order and return shapes, done
by the native `floe.Client` (kept as `.floe`).

Where Bauplan's meaning and floe's differ, this follows Bauplan: a bare table name is in
namespace `bauplan`; `import_data` appends to an existing table; a failed `run` or
`import_data` answers a state whose `job_status` is not `SUCCESS` (it raises only when the
request itself is refused); a ref object passed to a read pins its commit (`name@hash`).
What floe cannot do raises NotImplementedError saying so; nothing is silently ignored but
a query's `cache` (floe caches no query answers, so on and off compute the same rows).
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .. import __version__
from .. import models
from ..client import Client as FloeClient
from ..errors import FloeError
from . import exceptions as bx
from .schema import (
    Branch,
    Commit,
    Job,
    JobContext,
    JobKind,
    JobLogEvent,
    JobState,
    Namespace,
    Ref,
    Table,
    Tag,
)
from .state import (
    InfoState,
    RunExecutionContext,
    RunnerNodeInfo,
    RunState,
    TableDataImportContext,
    TableDataImportState,
    UserInfo,
)

if TYPE_CHECKING:
    import pyarrow

# Where Bauplan resolves bare table names, and floe's runs too.
DEFAULT_NAMESPACE = "bauplan"
DEFAULT_REF = "main"
# floe's import errors that mean "this import failed" (a state), not "the call was wrong".
_IMPORT_FAILURES = ("IncompatibleFiles", "InvalidImport", "DuplicateImport", "Conflict")
_REGEX_CHARS = re.compile(r"[\\^$.|?*+()\[\]{}]")


def _unsupported(what: str, why: str) -> NotImplementedError:
    return NotImplementedError(f"floe does not support {what}: {why}")


def _branch_name(branch: str | Ref) -> str:
    """A branch argument: a name, or a ref object's name."""
    return branch.name if isinstance(branch, Ref) else branch


def _ref_spec(ref: str | Ref | None) -> str:
    """A ref argument read at: a spec, or a ref object pinned at its commit."""
    if ref is None:
        return DEFAULT_REF
    return str(ref)


def _table_key(table: str | Table, namespace: str | Namespace | None) -> str:
    """`namespace.table`: a bare name is in `namespace`, else in `bauplan`."""
    if isinstance(table, Table):
        return table.fqn
    if "." in table:
        return table
    ns = namespace.name if isinstance(namespace, Namespace) else namespace
    return f"{ns or DEFAULT_NAMESPACE}.{table}"


def _namespace(namespace: str | Namespace) -> str:
    return namespace.name if isinstance(namespace, Namespace) else namespace


def _switch(value: str | bool | None, name: str, default: bool) -> bool:
    """Bauplan's `'on'`/`'off'` options (booleans also accepted)."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if value.lower() in ("on", "true"):
        return True
    if value.lower() in ("off", "false"):
        return False
    raise ValueError(f"{name} is 'on' or 'off', got {value!r}")


def _matches(pattern: str | None, text: str) -> bool:
    return pattern is None or re.search(pattern, text) is not None


def _no_extras(args: dict[str, str] | None, priority: int | None) -> None:
    if args:
        raise _unsupported("args", "floe takes no backend arguments beyond its options")
    if priority is not None:
        raise _unsupported("priority", "floe starts queued jobs in the order they came")


def _files(search_uri: str) -> str:
    """A search URI floe can read: a local path or glob (uploaded), or `file://` (read by
    the server under its --import-root)."""
    scheme = urlparse(search_uri).scheme
    if scheme and scheme != "file" and len(scheme) > 1:  # `C:` is a drive, not a scheme
        raise _unsupported(
            f"{scheme}:// search URIs",
            "floe imports local files (uploaded) and file:// paths under the server's "
            "--import-root",
        )
    return search_uri


def _many(value: Any) -> list[Any]:
    """A filter's values: one value, or a sequence of them."""
    if value is None:
        return []
    if isinstance(value, (str, JobKind, JobState, Job)):
        return [value]
    return list(value)


def _job_kind(kind: str | JobKind) -> JobKind:
    """`JobKind.RUN`, `"RUN"`, or floe's `"run"` / `"import"`."""
    if isinstance(kind, JobKind):
        return kind
    return JobKind.__members__.get(kind.upper()) or JobKind.from_floe(kind)


def _job_state(state: str | JobState) -> JobState:
    """`JobState.RUNNING`, `"RUNNING"`, or floe's `"running"`, `"succeeded"`, ..."""
    if isinstance(state, JobState):
        return state
    return JobState.__members__.get(state.upper()) or JobState.from_floe(state)


class Client:
    """A `bauplan.Client` over floe: `floe.bauplan.Client(url=...)` where a script had
    `bauplan.Client()`.

    Args:
        url: The floe server (default: `FLOE_URL`, else `http://127.0.0.1:8181`).
        token: Sent as a bearer token; `api_key` is the same, under Bauplan's name.
        client_timeout: Seconds each request may take (default 300).
        profile, config_file_path: Bauplan's configuration; floe has none (refused).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        api_key: str | None = None,
        client_timeout: int | None = None,
        profile: str | None = None,
        config_file_path: str | None = None,
    ) -> None:
        if profile is not None or config_file_path is not None:
            raise _unsupported("profiles and config files", "pass url= and token= instead")
        self._token = token or api_key
        self._timeout = float(client_timeout) if client_timeout is not None else 300.0
        self.floe = FloeClient(url, token=self._token, timeout_s=self._timeout)

    def __repr__(self) -> str:
        return f"floe.bauplan.Client({self.floe.url!r})"

    def _native(self, client_timeout: int | None) -> FloeClient:
        """The native client, with a call's own `client_timeout` if it has one."""
        if client_timeout is None:
            return self.floe
        return FloeClient(self.floe.url, token=self._token, timeout_s=float(client_timeout))

    @contextmanager
    def _errors(self, about: str = "") -> Iterator[None]:
        try:
            yield
        except bx.BauplanError:
            raise
        except FloeError as e:
            raise bx.translate(e, about) from e

    def info(self, *, client_timeout: int | None = None) -> InfoState:
        """The client's version and principal (floe has no accounts: `anonymous`)."""
        return InfoState(
            client_version=__version__,
            user=UserInfo("anonymous", "anonymous", "", "", "anonymous"),
            organization=None,
            runners=[RunnerNodeInfo(urlparse(self.floe.url).hostname or self.floe.url)],
        )

    # -- branches and tags --------------------------------------------------------------

    def get_branches(self, *, name: str | None = None, user: str | None = None,
                     limit: int | None = None) -> Iterator[Branch]:
        with self._errors("branch"):
            refs = self.floe.list_branches()
        found = [Branch(r.name, r.head) for r in refs
                 if _matches(name, r.name) and (user is None or r.created_by == user)]
        return iter(found[:limit] if limit is not None else found)

    def get_branch(self, branch: str | Branch) -> Branch:
        with self._errors("branch"):
            ref = self.floe.get_branch(_branch_name(branch))
        return Branch(ref.name, ref.head)

    def has_branch(self, branch: str | Branch) -> bool:
        with self._errors("branch"):
            return self.floe.has_branch(_branch_name(branch))

    def create_branch(self, branch: str | Branch, from_ref: str | Ref, *,
                      if_not_exists: bool = False) -> Branch:
        name = _branch_name(branch)
        with self._errors("branch"):
            if if_not_exists and self.floe.has_branch(name):
                return self.get_branch(name)
            ref = self.floe.create_branch(name, _ref_spec(from_ref))
        return Branch(ref.name, ref.head)

    def delete_branch(self, branch: str | Branch, *, if_exists: bool = False) -> bool:
        name = _branch_name(branch)
        with self._errors("branch"):
            if if_exists and not self.floe.has_branch(name):
                return False
            self.floe.delete_branch(name)
        return True

    def rename_branch(self, branch: str | Branch, new_branch: str | Branch) -> Branch:
        raise _unsupported("renaming a branch", "create the new branch from it, then delete it")

    def get_tags(self, *, filter_by_name: str | None = None,
                 limit: int | None = None) -> Iterator[Tag]:
        with self._errors("tag"):
            refs = self.floe.list_tags()
        found = [Tag(r.name, r.head) for r in refs if _matches(filter_by_name, r.name)]
        return iter(found[:limit] if limit is not None else found)

    def get_tag(self, tag: str | Tag) -> Tag:
        with self._errors("tag"):
            ref = self.floe.get_tag(_branch_name(tag))
        return Tag(ref.name, ref.head)

    def has_tag(self, tag: str | Tag) -> bool:
        with self._errors("tag"):
            return self.floe.has_tag(_branch_name(tag))

    def create_tag(self, tag: str | Tag, from_ref: str | Ref, *,
                   if_not_exists: bool = False) -> Tag:
        name = _branch_name(tag)
        with self._errors("tag"):
            if if_not_exists and self.floe.has_tag(name):
                return self.get_tag(name)
            ref = self.floe.create_tag(name, _ref_spec(from_ref))
        return Tag(ref.name, ref.head)

    def delete_tag(self, tag: str | Tag, *, if_exists: bool = False) -> bool:
        name = _branch_name(tag)
        with self._errors("tag"):
            if if_exists and not self.floe.has_tag(name):
                return False
            self.floe.delete_tag(name)
        return True

    def rename_tag(self, tag: str | Tag, new_tag: str | Tag) -> Tag:
        raise _unsupported("renaming a tag", "create the new tag at it, then delete it")

    # -- commits and merges -------------------------------------------------------------

    def get_commits(
        self,
        ref: str | Ref,
        *,
        filter_by_message: str | None = None,
        filter_by_author_username: str | None = None,
        filter_by_author_name: str | None = None,
        filter_by_author_email: str | None = None,
        filter_by_authored_date: str | datetime | None = None,
        filter_by_authored_date_start_at: str | datetime | None = None,
        filter_by_authored_date_end_at: str | datetime | None = None,
        filter_by_parent_hash: str | None = None,
        filter_by_properties: dict[str, str] | None = None,
        filter: str | None = None,
        limit: int | None = None,
    ) -> Iterator[Commit]:
        """History of `ref`, newest first. Message and author filters are regular
        expressions (searched); floe keeps one author name per commit, so the username,
        name and email filters all search it."""
        if filter is not None:
            raise _unsupported("CEL filters", "use the filter_by_* arguments")
        if filter_by_authored_date is not None:
            raise _unsupported("an exact authored date",
                               "use filter_by_authored_date_start_at and _end_at")
        authors = [p for p in (filter_by_author_username, filter_by_author_name,
                               filter_by_author_email) if p is not None]

        def plain(pattern: str | None) -> str | None:
            # A pattern without regex characters is also a substring the server can use
            # to filter first (its match is case-insensitive, so it keeps a superset).
            return pattern if pattern and not _REGEX_CHARS.search(pattern) else None

        client_side = bool(filter_by_message or authors or filter_by_parent_hash
                           or filter_by_properties)
        spec = _ref_spec(ref)
        with self._errors("ref"):
            commits = self.floe.log(
                spec,
                limit=None if client_side else limit,
                grep=plain(filter_by_message),
                author=plain(authors[0]) if len(authors) == 1 else None,
                since=filter_by_authored_date_start_at,
                until=filter_by_authored_date_end_at,
            )
        name, kind = self._ref_of_history(ref, spec)
        out = []
        for c in commits:
            if not _matches(filter_by_message, c.message):
                continue
            if not all(_matches(a, c.author) for a in authors):
                continue
            if filter_by_parent_hash and (c.parents[:1] != [filter_by_parent_hash]):
                continue
            if filter_by_properties and any(c.properties.get(k) != v
                                            for k, v in filter_by_properties.items()):
                continue
            out.append(Commit.from_floe(c, name, kind))
            if limit is not None and len(out) >= limit:
                break
        return iter(out)

    def _ref_of_history(self, ref: str | Ref, spec: str) -> tuple[str | None, str]:
        """The ref whose history was read, to pin each commit on (`name@hash`): a branch
        or tag name; None for any other spec (a hash, `main~2`), whose commits stand
        alone."""
        if isinstance(ref, Ref):
            return (ref.name or None), ("tag" if isinstance(ref, Tag) else "branch")
        if not re.fullmatch(r"[\w./-]+", spec) or re.fullmatch(r"[0-9a-f]{8,64}", spec):
            return None, "branch"
        try:
            return spec, self.floe.get_ref(spec).kind
        except FloeError:
            return None, "branch"

    def merge_branch(self, source_ref: str | Ref, into_branch: str | Branch, *,
                     commit_message: str | None = None, commit_body: str | None = None,
                     commit_properties: dict[str, str] | None = None) -> Branch:
        """Merges `source_ref` into `into_branch`; MergeConflictError names the keys."""
        message = commit_message
        if commit_body:
            message = f"{commit_message or 'merge'}\n\n{commit_body}"
        into = _branch_name(into_branch)
        with self._errors("merge"):
            result = self.floe.merge(_ref_spec(source_ref), into, message=message,
                                     properties=commit_properties)
        return Branch(into, result.head)

    # -- namespaces ---------------------------------------------------------------------

    def get_namespaces(self, ref: str | Ref, *, filter_by_name: str | None = None,
                       limit: int | None = None) -> Iterator[Namespace]:
        with self._errors("ref"):
            found = [Namespace(n.name) for n in self.floe.list_namespaces(_ref_spec(ref))
                     if _matches(filter_by_name, n.name)]
        return iter(found[:limit] if limit is not None else found)

    def get_namespace(self, namespace: str | Namespace, ref: str | Ref) -> Namespace:
        with self._errors("namespace"):
            return Namespace(self.floe.get_namespace(_namespace(namespace), _ref_spec(ref)).name)

    def has_namespace(self, namespace: str | Namespace, ref: str | Ref) -> bool:
        with self._errors("namespace"):
            return self.floe.has_namespace(_namespace(namespace), _ref_spec(ref))

    def create_namespace(self, namespace: str | Namespace, branch: str | Branch, *,
                         commit_body: str | None = None,
                         commit_properties: dict[str, str] | None = None,
                         if_not_exists: bool = False) -> Namespace:
        if commit_properties:
            raise _unsupported("commit properties on a namespace's commit",
                               "floe sets its message only")
        name, on = _namespace(namespace), _branch_name(branch)
        with self._errors("namespace"):
            if if_not_exists and self.floe.has_namespace(name, on):
                return Namespace(name)
            return Namespace(self.floe.create_namespace(name, on, message=commit_body).name)

    def delete_namespace(self, namespace: str | Namespace, branch: str | Branch, *,
                         if_exists: bool = False, commit_body: str | None = None,
                         commit_properties: dict[str, str] | None = None) -> Branch:
        if commit_body or commit_properties:
            raise _unsupported("a message or properties on a namespace's drop",
                               "floe writes its own message")
        name, on = _namespace(namespace), _branch_name(branch)
        with self._errors("namespace"):
            if if_exists and not self.floe.has_namespace(name, on):
                return self.get_branch(on)
            return Branch(on, self.floe.drop_namespace(name, on).head)

    # -- tables -------------------------------------------------------------------------

    def _table(self, key: str, spec: str, entry_id: str = "") -> Table:
        ns, _, name = key.rpartition(".")
        return Table(name, ns, entry_id, lambda: self._load_table(key, spec))

    def _load_table(self, key: str, spec: str) -> models.Table:
        with self._errors("table"):
            return self.floe.get_table(key, spec)

    def get_tables(self, ref: str | Ref, *, filter_by_name: str | None = None,
                   filter_by_namespace: str | Namespace | None = None,
                   limit: int | None = None) -> Iterator[Table]:
        spec = _ref_spec(ref)
        ns = _namespace(filter_by_namespace) if filter_by_namespace is not None else None
        with self._errors("ref"):
            entries = self.floe.list_tables(spec, namespace=ns)
        found = [self._table(e.key, spec, e.content_id) for e in entries
                 if _matches(filter_by_name, e.name)]
        return iter(found[:limit] if limit is not None else found)

    def get_table(self, table: str | Table, ref: str | Ref, *,
                  namespace: str | Namespace | None = None) -> Table:
        key, spec = _table_key(table, namespace), _ref_spec(ref)
        loaded = self._load_table(key, spec)
        out = self._table(key, spec, loaded.uuid)
        out._table = loaded
        return out

    def has_table(self, table: str | Table, ref: str | Ref, *,
                  namespace: str | Namespace | None = None) -> bool:
        with self._errors("table"):
            return self.floe.has_table(_table_key(table, namespace), _ref_spec(ref))

    def delete_table(self, table: str | Table, branch: str | Branch, *,
                     namespace: str | Namespace | None = None, if_exists: bool = False,
                     commit_body: str | None = None,
                     commit_properties: dict[str, str] | None = None) -> Branch:
        if commit_properties:
            raise _unsupported("commit properties on a table's drop", "floe sets its message only")
        key, on = _table_key(table, namespace), _branch_name(branch)
        with self._errors("table"):
            if if_exists and not self.floe.has_table(key, on):
                return self.get_branch(on)
            self.floe.drop_table(key, on, message=commit_body)
        return self.get_branch(on)

    def create_table(self, table: str | Table, search_uri: str, *,
                     branch: str | Branch | None = None,
                     namespace: str | Namespace | None = None,
                     partitioned_by: str | None = None, replace: bool | None = None,
                     args: dict[str, str] | None = None, priority: int | None = None,
                     client_timeout: int | None = None) -> Table:
        """Creates an empty table with the schema of the files `search_uri` names (floe
        infers it as an import would); `import_data` then loads them. With `replace`, an
        existing table is dropped first: two commits, not one."""
        _no_extras(args, priority)
        if partitioned_by:
            raise _unsupported("partitioned_by", "import into a table created partitioned "
                               "through the Iceberg REST catalog")
        files = _files(search_uri)
        key, on = _table_key(table, namespace), _branch_name(branch or DEFAULT_REF)
        native = self._native(client_timeout)
        with self._errors("table"):
            exists = native.has_table(key, on)
            if exists and not replace:
                raise bx.UpdateConflictError(f"table {key} already exists on {on}; pass "
                                             "replace=True to replace it", status=409,
                                             error_type="TableAlreadyExists")
            plan = native.import_data(key, files, branch=on, dry_run=True,
                                      mode="replace" if exists else None)
            if exists:
                native.drop_table(key, on, message=f"replace table {key}")
            created = native.create_table(key, plan.schema, on)
        out = self._table(key, on, created.uuid)
        out._table = created
        return out

    def import_data(self, table: str | Table, search_uri: str, *,
                    branch: str | Branch | None = None,
                    namespace: str | Namespace | None = None, continue_on_error: bool = False,
                    import_duplicate_files: bool = False, best_effort: bool = False,
                    preview: str | None = None, args: dict[str, str] | None = None,
                    priority: int | None = None, client_timeout: int | None = None,
                    detach: bool = False) -> TableDataImportState:
        """Appends the files `search_uri` names (a local path or glob, or `file://` under
        the server's --import-root) to an existing table, as one commit. A rejected import
        (incompatible or already imported files, a concurrent change) answers a state
        with `job_status == "FAILED"` and floe's message in `error`."""
        _no_extras(args, priority)
        if continue_on_error or best_effort:
            raise _unsupported("continue_on_error and best_effort",
                               "an import lands whole or not at all")
        if preview not in (None, "off"):
            raise _unsupported("preview on an import", "use a dry run of floe.Client.import_data")
        if detach:
            raise _unsupported("detached imports", "an import answers once it landed")
        files = _files(search_uri)
        key, on = _table_key(table, namespace), _branch_name(branch or DEFAULT_REF)
        ns, _, name = key.rpartition(".")
        ctx = TableDataImportContext(on, ns, name, search_uri, import_duplicate_files)
        native = self._native(client_timeout)
        with self._errors("table"):
            if not native.has_table(key, on):
                raise bx.TableNotFoundError(
                    f"table {key} does not exist on {on}; create it first (create_table)",
                    status=404, error_type="TableNotFound")
        try:
            result = native.import_data(key, files, branch=on, mode="append",
                                        force=import_duplicate_files)
        except FloeError as e:
            if e.error_type not in _IMPORT_FAILURES:
                raise bx.translate(e, "table") from e
            return TableDataImportState(None, "FAILED", e.message, ctx)
        return TableDataImportState(result.job_id, "SUCCESS", None, ctx, result)

    def revert_table(self, table: str | Table, *, source_ref: str | Ref,
                     into_branch: str | Branch, **_: Any) -> Branch:
        raise _unsupported("revert_table", "floe reverts commits (floe.Client.revert), "
                           "not single tables")

    def plan_table_creation(self, *_: Any, **__: Any) -> Any:
        raise _unsupported("table creation plans", "create_table infers the schema at once")

    def apply_table_creation_plan(self, *_: Any, **__: Any) -> Any:
        raise _unsupported("table creation plans", "create_table infers the schema at once")

    def create_external_table_from_parquet(self, *_: Any, **__: Any) -> Any:
        raise _unsupported("external tables", "floe's tables live in its warehouse")

    def create_external_table_from_metadata(self, *_: Any, **__: Any) -> Any:
        raise _unsupported("external tables", "floe's tables live in its warehouse")

    # -- queries ------------------------------------------------------------------------

    def query(self, query: str, *, ref: str | Ref | None = None, max_rows: int | None = None,
              cache: str | None = None, namespace: str | Namespace | None = None,
              args: dict[str, str] | None = None, priority: int | None = None,
              client_timeout: int | None = None) -> pyarrow.Table:
        """Runs SQL at `ref` (default `main`); bare table names are in `namespace`
        (default `bauplan`). Answers a `pyarrow.Table`."""
        _no_extras(args, priority)
        ns = _namespace(namespace) if namespace is not None else DEFAULT_NAMESPACE
        with self._errors("query"):
            return self._native(client_timeout).query(
                query, _ref_spec(ref), namespace=ns, max_rows=max_rows,
                timeout_ms=client_timeout * 1000 if client_timeout else None)

    def query_to_generator(self, query: str, **options: Any) -> Iterator[dict[str, Any]]:
        """The query's rows, one dict at a time."""
        for batch in self.query(query, **options).to_batches():
            yield from batch.to_pylist()

    def _query_to_file(self, path: str | Path, query: str, fmt: str, *,
                       ref: str | Ref | None = None, max_rows: int | None = None,
                       cache: str | None = None, namespace: str | Namespace | None = None,
                       args: dict[str, str] | None = None, priority: int | None = None,
                       client_timeout: int | None = None) -> Path:
        _no_extras(args, priority)
        ns = _namespace(namespace) if namespace is not None else DEFAULT_NAMESPACE
        with self._errors("query"):
            data = self._native(client_timeout).query_bytes(
                query, _ref_spec(ref), format=fmt, namespace=ns, max_rows=max_rows)
        out = Path(path)
        out.write_bytes(data)
        return out

    def query_to_parquet_file(self, path: str | Path, query: str, **options: Any) -> Path:
        return self._query_to_file(path, query, "parquet", **options)

    def query_to_csv_file(self, path: str | Path, query: str, **options: Any) -> Path:
        return self._query_to_file(path, query, "csv", **options)

    def query_to_json_file(self, path: str | Path, query: str, *, file_format: str = "json",
                           **options: Any) -> Path:
        formats = {"json": "json", "jsonl": "ndjson"}
        if file_format not in formats:
            raise ValueError(f"file_format is 'json' or 'jsonl', got {file_format!r}")
        return self._query_to_file(path, query, formats[file_format], **options)

    def scan(self, table: str | Table, *, ref: str | Ref | None = None,
             columns: list[str] | None = None, filters: str | None = None,
             limit: int | None = None, cache: str | None = None,
             namespace: str | Namespace | None = None, args: dict[str, str] | None = None,
             priority: int | None = None, client_timeout: int | None = None) -> pyarrow.Table:
        """A table's rows (those `columns`, those matching the SQL `filters`)."""
        key = _table_key(table, namespace)

        def quote(name: str) -> str:
            return '"' + name.replace('"', '""') + '"'

        sql = (f"SELECT {', '.join(quote(c) for c in columns) if columns else '*'} "
               f"FROM {'.'.join(quote(p) for p in key.split('.'))}")
        if filters:
            sql += f" WHERE {filters}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self.query(sql, ref=ref, args=args, priority=priority,
                          client_timeout=client_timeout)

    # -- runs and jobs ------------------------------------------------------------------

    def run(self, project_dir: str, *, ref: str | Ref | None = None,
            namespace: str | Namespace | None = None,
            parameters: dict[str, str | int | float | bool | None] | None = None,
            cache: str | bool | None = None, transaction: str | bool | None = None,
            dry_run: bool | None = None, strict: str | bool | None = None,
            preview: str | None = None, args: dict[str, str] | None = None,
            priority: int | None = None, client_timeout: int | None = None,
            detach: bool = False) -> RunState:
        """Runs the project at `project_dir` on branch `ref` (default `main`), printing
        its log as it goes unless `detach`. A failed run answers a state whose
        `job_status` is `FAILED` and whose `error` says why; so does a project that does
        not plan (with no `job_id`: nothing ran)."""
        _no_extras(args, priority)
        use_cache = _switch(cache, "cache", True)  # floe's results cache of model outputs
        previews = {None: None, "off": None, "on": "head", "head": "head", "tail": "tail"}
        if preview not in previews:
            raise ValueError(f"preview is 'on', 'off', 'head' or 'tail', got {preview!r}")
        on = _branch_name(ref) if isinstance(ref, Ref) else (ref or DEFAULT_REF)
        ns = _namespace(namespace) if namespace is not None else None
        use_transaction = _switch(transaction, "transaction", True)
        use_strict = _switch(strict, "strict", False)
        try:
            job = self.floe.run(
                project_dir, on, namespace=ns, parameters=parameters, dry_run=bool(dry_run),
                strict=use_strict, transaction=use_transaction, cache=use_cache,
                preview=previews[preview], timeout_s=client_timeout, detach=detach)
        except FloeError as e:
            if e.error_type != "InvalidProject":
                raise bx.translate(e, "run") from e
            ctx = self._run_ctx(project_dir, on, ns or "", bool(dry_run), detach, use_strict,
                                use_transaction, preview, cache, None)
            return RunState(None, "FAILED", e.message, ctx, 0, None, {}, {}, [])
        ctx = self._run_ctx(project_dir, on, job.namespace or "", bool(dry_run), detach,
                            use_strict, use_transaction, preview, cache, job)
        return RunState.from_job(job, ctx, detached=detach)

    def _run_ctx(self, project_dir: str, ref: str, namespace: str, dry_run: bool,
                 detach: bool, strict: bool, transaction: bool, preview: str | None,
                 cache: str | bool | None, job: models.Job | None) -> RunExecutionContext:
        code = (job.pipeline or {}).get("code", "") if job is not None else ""
        uri = f"{self.floe.url}/api/v1/runs/{job.id}/code" if job is not None else ""
        return RunExecutionContext(
            project_dir=str(project_dir), ref=ref, namespace=namespace, dry_run=dry_run,
            detach=detach, strict=strict, transaction=transaction, preview=preview or "off",
            cache="on" if _switch(cache, "cache", True) else "off", snapshot_id=code,
            snapshot_uri=uri)

    def get_job(self, job_id: str) -> Job:
        with self._errors("job"):
            return Job.from_floe(self.floe.get_job(job_id))

    def get_jobs(self, *, all_users: bool | None = None,
                 filter_by_ids: str | Sequence[str | Job] | None = None,
                 filter_by_users: str | Sequence[str] | None = None,
                 filter_by_kinds: str | JobKind | Sequence[str | JobKind] | None = None,
                 filter_by_statuses: str | JobState | Sequence[str | JobState] | None = None,
                 filter_by_created_after: datetime | None = None,
                 filter_by_created_before: datetime | None = None,
                 limit: int | None = None) -> Iterator[Job]:
        """Jobs, newest first. floe has no users: `all_users` changes nothing."""

        ids = {j.id if isinstance(j, Job) else j for j in _many(filter_by_ids)}
        users = set(_many(filter_by_users))
        kinds = {_job_kind(k).floe_kind() for k in _many(filter_by_kinds)}
        states = {_job_state(s).floe_state() for s in _many(filter_by_statuses)}
        with self._errors("job"):
            jobs = self.floe.list_jobs(
                kind=next(iter(kinds)) if len(kinds) == 1 else None,
                state=next(iter(states)) if len(states) == 1 else None)

        def wanted(j: models.Job) -> bool:
            started = datetime.fromtimestamp(j.started_ms / 1000, tz=timezone.utc)
            return ((not ids or j.id in ids) and (not users or j.principal in users)
                    and (not kinds or j.kind in kinds) and (not states or j.state in states)
                    and (filter_by_created_after is None or started >= filter_by_created_after)
                    and (filter_by_created_before is None or started <= filter_by_created_before))

        found = [Job.from_floe(j) for j in reversed(jobs) if wanted(j)]
        return iter(found[:limit] if limit is not None else found)

    def cancel_job(self, job_id: str) -> None:
        with self._errors("job"):
            self.floe.cancel_job(job_id)

    def get_job_logs(self, job: str | Job) -> list[JobLogEvent]:
        job_id = job.id if isinstance(job, Job) else job
        with self._errors("job"):
            return [JobLogEvent.from_floe(line) for line in self.floe.job_logs(job_id)]

    def get_job_context(self, job: str | Job, *, include_logs: bool = False,
                        include_snapshot: bool = False) -> JobContext:
        job_id = job.id if isinstance(job, Job) else job
        with self._errors("job"):
            record = self.floe.get_job(job_id)
            logs = self.get_job_logs(job_id) if include_logs else []
            snapshot: dict[str, str] = {}
            if include_snapshot and record.kind == "run":
                with tarfile.open(fileobj=io.BytesIO(self.floe.job_code(job_id))) as tar:
                    for member in tar.getmembers():
                        f = tar.extractfile(member)
                        if f is not None:
                            snapshot[member.name] = f.read().decode("utf-8", errors="replace")
        return JobContext.from_floe(record, logs, snapshot)

    def get_job_contexts(self, jobs: str | Sequence[str | Job], *, include_logs: bool = False,
                         include_snapshot: bool = False) -> list[JobContext]:
        items = [jobs] if isinstance(jobs, str) else list(jobs)
        return [self.get_job_context(j, include_logs=include_logs,
                                     include_snapshot=include_snapshot) for j in items]
