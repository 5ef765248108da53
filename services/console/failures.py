"""How the suite's refusals read in a browser: an HTTP status and words."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from stepforge.errors import StepforgeError


@dataclass(frozen=True)
class Failure:
    status: int
    title: str
    message: str


_BY_CODE = {
    grpc.StatusCode.NOT_FOUND: (404, "Not found"),
    grpc.StatusCode.INVALID_ARGUMENT: (400, "Not a valid request"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "Not possible now"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "Not allowed"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "Sign in again"),
    grpc.StatusCode.UNAVAILABLE: (503, "The environment cannot be reached"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "The environment did not answer in time"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "The environment is busy"),
}


def failure_of(error: StepforgeError, environment_url: str) -> Failure:
    """The page to show for a call the suite refused."""
    status, title = (502, "The environment answered with an error")
    if error.code in _BY_CODE:
        status, title = _BY_CODE[error.code]
    message = error.message
    if error.code == grpc.StatusCode.UNAVAILABLE:
        message = f"{environment_url} does not answer: {error.message}"
    return Failure(status, title, message)
