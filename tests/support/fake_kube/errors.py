"""API errors and the Status objects the API server answers them with."""

from __future__ import annotations

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
    resource = f"{kind_plural}.{group}" if group else kind_plural
    return ApiError(
        "NotFound",
        f'{resource} "{name}" not found',
        {"name": name, "group": group, "kind": kind_plural},
    )


def already_exists(kind_plural: str, group: str, name: str) -> ApiError:
    """The AlreadyExists error for `name`."""
    resource = f"{kind_plural}.{group}" if group else kind_plural
    return ApiError(
        "AlreadyExists",
        f'{resource} "{name}" already exists',
        {"name": name, "group": group, "kind": kind_plural},
    )


def invalid(
    kind: str, group: str, name: str, causes: list[tuple[str, str, str]]
) -> ApiError:
    """The Invalid (422) error listing each (field, reason, message) cause."""
    qualified = f"{kind}.{group}" if group else kind
    summary = ", ".join(f"{field}: {message}" for field, _, message in causes)
    return ApiError(
        "Invalid",
        f'{qualified} "{name}" is invalid: [{summary}]',
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
