"""API errors and the Status objects the API server answers them with."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# HTTP status code of each Status reason the fake uses.
_CODES = {
    "BadRequest": 400,
    "Unauthorized": 401,
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "AlreadyExists": 409,
    "Gone": 410,
    "Expired": 410,
    "Invalid": 422,
    "InternalError": 500,
}


class ApiError(Exception):
    """A failed API request, answered with a Status object."""

    def __init__(
        self,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = _CODES[reason]
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        """The Status object of this error."""
        return failure_status(self.code, self.reason, self.message, self.details)


def failure_status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A Status object with status Failure."""
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        status["details"] = details
    return status


def success_status(details: dict[str, Any]) -> dict[str, Any]:
    """A Status object with status Success, as a deletion answers."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def not_found(kind_plural: str, group: str, name: str) -> ApiError:
    """The NotFound error for `name`, worded as the API server words it."""
    return _about(kind_plural, group, name, "NotFound", "not found")


def already_exists(kind_plural: str, group: str, name: str) -> ApiError:
    """The AlreadyExists error for `name`."""
    return _about(kind_plural, group, name, "AlreadyExists", "already exists")


def invalid(
    kind: str, group: str, name: str, causes: list[tuple[str, str, str]]
) -> ApiError:
    """The Invalid (422) error listing each (field, reason, message) cause."""
    summary = ", ".join(f"{field}: {message}" for field, _, message in causes)
    return ApiError(
        "Invalid",
        f'{_qualified(kind, group)} "{name}" is invalid: [{summary}]',
        {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [
                {"reason": reason, "message": message, "field": field}
                for field, reason, message in causes
            ],
        },
    )


@contextmanager
def ignoring_not_found() -> Iterator[None]:
    """Lets NotFound pass: for work on an object that may be gone already."""
    try:
        yield
    except ApiError as error:
        if error.reason != "NotFound":
            raise


def _about(
    kind_plural: str, group: str, name: str, reason: str, state: str
) -> ApiError:
    return ApiError(
        reason,
        f'{_qualified(kind_plural, group)} "{name}" {state}',
        {"name": name, "group": group, "kind": kind_plural},
    )


def _qualified(kind: str, group: str) -> str:
    return f"{kind}.{group}" if group else kind
