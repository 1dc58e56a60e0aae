"""A `bauplan.Client`-compatible subset over floe, so that Bauplan's orchestration scripts
run against floe with only the client's construction changed:

    import floe.bauplan as bauplan            # instead of: import bauplan
    client = bauplan.Client(url="http://127.0.0.1:8181")

or, keeping `import bauplan` for the rest of the script:

    from floe.bauplan import Client
    client = Client(url="http://127.0.0.1:8181")   # instead of: bauplan.Client()

The names a script reads besides the client (`bauplan.exceptions.BranchExistsError`,
`bauplan.JobState`, `bauplan.schema.Branch`, `bauplan.state.RunState`) are here too.
The pipeline decorators (`bauplan.model`, ...) are not: models run inside floe, where
floe's own `bauplan` module provides them.
"""

from __future__ import annotations

from . import exceptions, schema, state
from ._client import Client
from .schema import (
    Actor,
    Branch,
    Commit,
    DetachedRef,
    Job,
    JobContext,
    JobKind,
    JobLogEvent,
    JobLogLevel,
    JobLogStream,
    JobState,
    Namespace,
    Ref,
    RefType,
    Table,
    TableField,
    Tag,
)
from .state import (
    InfoState,
    RunExecutionContext,
    RunState,
    TableDataImportContext,
    TableDataImportState,
    UserInfo,
)

__all__ = [
    "Client",
    "exceptions",
    "schema",
    "state",
    "Actor",
    "Branch",
    "Commit",
    "DetachedRef",
    "InfoState",
    "Job",
    "JobContext",
    "JobKind",
    "JobLogEvent",
    "JobLogLevel",
    "JobLogStream",
    "JobState",
    "Namespace",
    "Ref",
    "RefType",
    "RunExecutionContext",
    "RunState",
    "Table",
    "TableDataImportContext",
    "TableDataImportState",
    "TableField",
    "Tag",
    "UserInfo",
]
