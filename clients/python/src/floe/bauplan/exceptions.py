"""Bauplan's exception names (`bauplan.exceptions`) over floe's errors, so that a script's
`except bauplan.exceptions.BranchExistsError:` catches what floe answers for the same
situation.

Every class here is also a `floe.FloeError`, and the ones for 400, 404 and 409 are also
`floe.BadRequestError`, `floe.NotFoundError` and `floe.ConflictError`: code written against
either client catches them. `translate` picks the class from floe's stable error type and
what the call was about (a branch, a tag, a merge, a query, ...).
"""

from __future__ import annotations

from ..errors import BadRequestError as _BadRequest
from ..errors import ConflictError as _Conflict
from ..errors import FloeConnectionError, FloeError
from ..errors import NotFoundError as _NotFound


class BauplanError(FloeError):
    """Every error `floe.bauplan.Client` raises."""


class BauplanHTTPError(BauplanError):
    """An error floe answered; `code`, `type` and `message` as Bauplan names them."""

    @property
    def code(self) -> int:
        return self.status or 0

    @property
    def type(self) -> str:
        return self.error_type or ""


class BauplanConnectionError(BauplanError, FloeConnectionError):
    """No answer arrived from the floe server."""


# 400
class BadRequestError(BauplanHTTPError, _BadRequest): ...
class InvalidDataError(BadRequestError): ...
class InvalidRefError(BadRequestError): ...
class NotABranchRefError(InvalidRefError): ...
class NotATagRefError(InvalidRefError): ...
class NotAWriteBranchRefError(NotABranchRefError): ...
class SameRefError(InvalidRefError): ...


# 401, 403
class UnauthorizedError(BauplanHTTPError): ...
class ForbiddenError(BauplanHTTPError): ...


# 404
class NotFoundError(BauplanHTTPError, _NotFound): ...
class ResourceNotFoundError(NotFoundError): ...
class TableNotFoundError(ResourceNotFoundError): ...
class NamespaceNotFoundError(ResourceNotFoundError): ...
class BranchNotFoundError(ResourceNotFoundError): ...
class RefNotFoundError(ResourceNotFoundError): ...
class TagNotFoundError(ResourceNotFoundError): ...


# 409
class ConflictError(BauplanHTTPError, _Conflict): ...
class UpdateConflictError(ConflictError): ...
class BranchExistsError(UpdateConflictError): ...
class TagExistsError(UpdateConflictError): ...
class NamespaceExistsError(UpdateConflictError): ...
class BranchHeadChangedError(UpdateConflictError): ...
class MergeConflictError(UpdateConflictError): ...
class NamespaceIsNotEmptyError(UpdateConflictError): ...
class NamespaceUnresolvedError(ConflictError): ...


# 429, 5xx
class TooManyRequestsError(BauplanHTTPError): ...
class InternalError(BauplanHTTPError): ...
class ServiceUnavailableError(BauplanHTTPError): ...


# Jobs and queries: what ran failed.
class BauplanJobError(BauplanError): ...
class BauplanQueryError(BauplanJobError): ...
class NoResultsFoundError(BauplanError): ...


# By floe's error type, whatever the call; `None` keys a class by the call's subject.
_BY_TYPE: dict[str, type[BauplanError]] = {
    "NamespaceNotFound": NamespaceNotFoundError,
    "NamespaceAlreadyExists": NamespaceExistsError,
    "NamespaceNotEmpty": NamespaceIsNotEmptyError,
    "NotANamespace": NamespaceUnresolvedError,
    "TableNotFound": TableNotFoundError,
    "NoSuchTableException": TableNotFoundError,
    "NoSuchNamespaceException": NamespaceNotFoundError,
    "TableAlreadyExists": UpdateConflictError,
    "Conflict": MergeConflictError,
    "NotFastForward": MergeConflictError,
    "ReferenceConflict": BranchHeadChangedError,
    "Contention": BranchHeadChangedError,
    "NotABranch": NotAWriteBranchRefError,
    "ReadOnlyRef": NotAWriteBranchRefError,
    "TagImmutable": NotAWriteBranchRefError,
    "AmbiguousHash": InvalidRefError,
    "CommitNotFound": RefNotFoundError,
    "NotInHistory": RefNotFoundError,
    "RunNotFound": ResourceNotFoundError,
    "IncompatibleFiles": InvalidDataError,
    "InvalidImport": InvalidDataError,
}

_BY_STATUS: dict[int, type[BauplanError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    429: TooManyRequestsError,
    503: ServiceUnavailableError,
}


def translate(e: FloeError, about: str = "") -> BauplanError:
    """The Bauplan-named error for floe's error `e`, raised by a call about `about`
    (`branch`, `tag`, `ref`, `query`, ...)."""
    if isinstance(e, BauplanError):
        return e
    cls: type[BauplanError]
    kind = e.error_type or ""
    if isinstance(e, FloeConnectionError):
        cls = BauplanConnectionError
    elif about == "query" and e.status in (400, 422):
        cls = BauplanQueryError  # bad SQL, an unknown table, a deadline: the query failed
    elif kind == "RefAlreadyExists":
        cls = TagExistsError if about == "tag" else BranchExistsError
    elif kind in ("RefNotFound", "NotFound") and e.status == 404:
        cls = {"branch": BranchNotFoundError, "tag": TagNotFoundError}.get(about, RefNotFoundError)
    elif kind in _BY_TYPE:
        cls = _BY_TYPE[kind]
    elif e.status is not None and e.status >= 500:
        cls = _BY_STATUS.get(e.status, InternalError)
    else:
        cls = _BY_STATUS.get(e.status or 0, BauplanHTTPError)
    out = cls(e.message, status=e.status, error_type=e.error_type, error_id=e.error_id,
              body=e.body)
    out.__cause__ = e
    return out
