"""floe-client: a typed Python client of floe's HTTP API, for scripts and notebooks.

    import floe
    client = floe.Client("http://127.0.0.1:8181")        # or FLOE_URL
    client.create_branch("dev", from_ref="main")
    client.import_data("db.sales", "sales-*.parquet", branch="dev")
    job = client.run("./pipeline", ref="dev")             # streams the log
    table = client.query("SELECT count(*) AS n FROM db.sales", ref="dev")  # pyarrow.Table
    client.merge("dev", into="main")

`floe.bauplan` offers a `bauplan.Client`-compatible subset, so that Bauplan's
orchestration scripts run against floe with only the client's construction changed.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._jobs import print_log
from .client import Client
from .errors import (
    BadRequestError,
    ConflictError,
    FloeConnectionError,
    FloeError,
    JobFailedError,
    NotFoundError,
)
from .models import (
    Change,
    Commit,
    CommitDetail,
    CommitResult,
    Entry,
    ImportFile,
    ImportResult,
    Job,
    JobNode,
    LogLine,
    MergeResult,
    Namespace,
    PartitionField,
    Plan,
    PlanNode,
    PropertiesResult,
    Ref,
    ReflogEntry,
    RevertResult,
    Table,
    TableField,
)

__all__ = [
    "__version__",
    "Client",
    "print_log",
    # Errors.
    "FloeError",
    "BadRequestError",
    "NotFoundError",
    "ConflictError",
    "FloeConnectionError",
    "JobFailedError",
    # What calls answer.
    "Change",
    "Commit",
    "CommitDetail",
    "CommitResult",
    "Entry",
    "ImportFile",
    "ImportResult",
    "Job",
    "JobNode",
    "LogLine",
    "MergeResult",
    "Namespace",
    "PartitionField",
    "Plan",
    "PlanNode",
    "PropertiesResult",
    "Ref",
    "ReflogEntry",
    "RevertResult",
    "Table",
    "TableField",
]
