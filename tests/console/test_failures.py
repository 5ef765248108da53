"""The suite's refusals as pages with the right HTTP status."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import grpc
import pytest
from console.console_client import ConsoleClient

from stepforge.errors import StepforgeError
from stepforge.services.console import ConsoleSettings, start_console
from stepforge.services.console.app import ConsoleApp
from stepforge.services.console.assets import StaticAssets
from stepforge.services.console.context import ConsoleContext
from stepforge.services.console.environment import EnvironmentReader
from stepforge.services.console.failures import failure_of
from stepforge.services.console.routes import ROUTES
from stepforge.services.console.sessions import SessionStore
from stepforge.services.console.web import Request


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def nowhere() -> str:
    """The address of an environment that does not answer."""
    return f"127.0.0.1:{unused_port()}"


@pytest.fixture
def app(nowhere: str) -> Iterator[tuple[ConsoleApp, ConsoleContext]]:
    with grpc.insecure_channel(nowhere) as channel:
        context = ConsoleContext(
            ConsoleSettings(environment_url=nowhere, port=0),
            EnvironmentReader(channel),
            SessionStore(idle_s=60, max_s=300),
            StaticAssets(),
        )
        yield ConsoleApp(context, ROUTES), context


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.FAILED_PRECONDITION, 409),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INTERNAL, 502),
    ],
)
def test_each_refusal_has_its_http_status(code: grpc.StatusCode, status: int) -> None:
    failure = failure_of(StepforgeError("what the suite said", code=code), "x:1")

    assert failure.status == status
    assert "what the suite said" in failure.message


def test_signing_in_to_an_unreachable_environment_says_so(nowhere: str) -> None:
    console = start_console(ConsoleSettings(environment_url=nowhere, port=0))
    try:
        reply = ConsoleClient(console.url).sign_in("sf_token")
    finally:
        console.stop()

    assert reply.status == 503
    assert f"The environment at {nowhere} cannot be reached" in reply.text


def test_a_page_of_an_unreachable_environment_is_a_503_page(
    app: tuple[ConsoleApp, ConsoleContext], nowhere: str
) -> None:
    console, context = app
    session = context.sessions.create("sf_token")

    response = console.handle(Request("GET", "/steps", cookie=session.id))

    assert response.status == 503
    assert isinstance(response.body, bytes)
    page = response.body.decode()
    assert "The environment cannot be reached" in page
    assert f"{nowhere} does not answer" in page
    assert "Sign out" in page


def test_a_stopped_console_can_be_stopped_again(nowhere: str) -> None:
    console = start_console(ConsoleSettings(environment_url=nowhere, port=0))
    console.stop()
    console.stop()

    with pytest.raises(OSError):
        ConsoleClient(console.url).get("/healthz")
