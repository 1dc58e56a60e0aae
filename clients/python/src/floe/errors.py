"""The one exception hierarchy of the client: every error the server answers becomes a
`FloeError` carrying floe's error body (status, stable type, message, error id).

floe answers every error of its own API as `{"type", "message", "errorId", "status"}`
(plus `currentHead` and `conflicts` for a conflict); its Iceberg REST catalog answers
`{"error": {"type", "message", "code"}}`. Both arrive here as the same exception, chosen by
HTTP status, so a caller catches `NotFoundError` whether a branch or a table was missing.
"""

from __future__ import annotations

from typing import Any


class FloeError(Exception):
    """An error answered by the floe server (or, for `FloeConnectionError`, no answer).

    Attributes:
        status: The HTTP status (None when no answer arrived).
        error_type: floe's stable name for the kind of error (`RefNotFound`,
            `ReferenceConflict`, `InvalidQuery`, ...), or the Iceberg exception type.
        message: What went wrong and what to do about it, as the server said it.
        error_id: The id the server logged the error under (quote it to an operator).
        body: The whole error body as the server sent it (a dict; empty if it was not JSON).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        error_id: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.error_id = error_id
        self.body: dict[str, Any] = dict(body or {})

    def __str__(self) -> str:
        where = f"{self.status} {self.error_type}" if self.status else (self.error_type or "")
        return f"{where}: {self.message}" if where else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, error_type={self.error_type!r}, "
            f"message={self.message!r})"
        )


class BadRequestError(FloeError):
    """The server refused the request as invalid (HTTP 400): bad SQL, a bad ref spec, a
    project that does not plan, files that do not fit a table, a write to a tag, ..."""


class NotFoundError(FloeError):
    """Something the request names does not exist (HTTP 404): a ref, commit, namespace,
    table or run."""


class ConflictError(FloeError):
    """The write was rejected and nothing changed (HTTP 409): the name exists, a merge met
    conflicting keys, a branch moved past the expected head, a sealed run's commit, ..."""

    @property
    def current_head(self) -> str | None:
        """The head the write was evaluated at, when floe says so."""
        head = self.body.get("currentHead")
        return head if isinstance(head, str) else None

    @property
    def conflicts(self) -> list[dict[str, Any]]:
        """Each key that stopped the write (`key`, `kind`, `sourceChange`, ...)."""
        found = self.body.get("conflicts")
        return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


class FloeConnectionError(FloeError):
    """No answer arrived: the server is unreachable or the connection broke. For a write
    the outcome is unknown; the client already retried it under the same Idempotency-Key."""


def error_for(status: int, body: Any, text: str) -> FloeError:
    """The exception for an error answer: its class by status, its fields from the body
    (floe's own shape or the Iceberg REST one), the raw text when the body is not JSON."""
    fields: dict[str, Any] = body if isinstance(body, dict) else {}
    if isinstance(fields.get("error"), dict):  # The Iceberg REST catalog's shape.
        inner = fields["error"]
        message = str(inner.get("message") or text)
        error_type = inner.get("type")
        error_id = None
    else:
        message = str(fields.get("message") or text.strip() or f"the server answered {status}")
        error_type = fields.get("type")
        error_id = fields.get("errorId")
    cls: type[FloeError] = {
        400: BadRequestError,
        404: NotFoundError,
        409: ConflictError,
    }.get(status, FloeError)
    return cls(
        message,
        status=status,
        error_type=error_type if isinstance(error_type, str) else None,
        error_id=error_id if isinstance(error_id, str) else None,
        body=fields,
    )


class JobFailedError(FloeError):
    """A job (a pipeline run or an import) ended `failed` or `cancelled`; raised by
    `Job.raise_for_state()`. `job` is the job's record, with each node's state and error."""

    def __init__(self, message: str, *, job: Any) -> None:
        super().__init__(message, error_type=f"Job{str(job.state).capitalize()}")
        self.job = job
