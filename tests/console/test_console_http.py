"""The console over HTTP against a real suite: sign-in, sessions, CSRF,
escaping, confinement to the token's environment, downloads and live logs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from console.console_client import ConsoleClient
from console.console_steps import (
    ESCAPED_HOSTILE,
    FILE_OUTPUT,
    HOSTILE,
    create_hostile_step,
    create_producing_step,
    create_waiting_step,
    write_step_code,
)
from support.suite import SuiteUnderTest, running_suite
from support.tenants import issue_token, opened_tenancy
from support.waiting import eventually

from stepforge.services.console import (
    ConsoleSettings,
    RunningConsole,
    live,
    start_console,
)


@dataclass
class World:
    suite: SuiteUnderTest
    console: RunningConsole
    hostile_execution: str
    produced_execution: str
    other_token: str
    markers: Path

    def client(self) -> ConsoleClient:
        return ConsoleClient(self.console.url)

    def signed_in(self, token: str | None = None) -> ConsoleClient:
        client = self.client()
        reply = client.sign_in(token or self.suite.token)
        assert reply.status == 303, reply.text
        return client


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("console")
    code = write_step_code(root / "code")
    with running_suite(root / "data") as suite:
        create_hostile_step(suite.sdk, code)
        create_producing_step(suite.sdk, code)
        create_waiting_step(suite.sdk, code)
        hostile = suite.sdk.run_pipeline("hostile-pipeline")
        produced = suite.sdk.run_pipeline(
            "produces-pipeline", inputs={"size": len(FILE_OUTPUT)}
        )
        with opened_tenancy(suite.suite.data_dir) as tenancy:
            tenancy.create_environment("default", "other")
            other = issue_token(tenancy, "default", "other", "other environment")
        console = start_console(ConsoleSettings(environment_url=suite.url, port=0))
        try:
            yield World(
                suite,
                console,
                hostile["execution_id"],
                produced["execution_id"],
                other.token,
                root / "markers",
            )
        finally:
            console.stop()


def sse_events(body: bytes) -> list[tuple[str, dict[str, object]]]:
    events = []
    for block in body.decode().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line
        )
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


# Signing in and out.


def test_signing_in_with_the_environment_token_opens_the_steps_list(
    world: World,
) -> None:
    client = world.client()

    reply = client.sign_in(world.suite.token)

    assert reply.status == 303
    assert reply.location == "/steps"
    steps = client.get("/steps")
    assert steps.status == 200
    assert ">hostile</a>" in steps.text
    assert ">produces</a>" in steps.text
    assert "Sign out" in steps.text


def test_a_wrong_token_shows_an_error_on_the_sign_in_page(world: World) -> None:
    client = world.client()

    reply = client.sign_in("sf_not-a-token-of-anything")

    assert reply.status == 401
    assert "This token is not accepted by the environment" in reply.text
    assert 'name="token"' in reply.text
    assert client.get("/steps").location.startswith("/sign-in")


def test_an_empty_token_is_refused_naming_the_field(world: World) -> None:
    reply = world.client().sign_in("   ")

    assert reply.status == 400
    assert "token: is required" in reply.text


def test_the_project_admin_token_cannot_sign_in(world: World) -> None:
    reply = world.client().sign_in(world.suite.admin_token)

    assert reply.status == 403
    assert "This token cannot read an environment" in reply.text


def test_sign_in_returns_to_the_page_asked_for(world: World) -> None:
    client = world.client()
    asked = client.get("/pipelines/hostile-pipeline")
    assert asked.status == 303
    assert asked.location == "/sign-in?next=%2Fpipelines%2Fhostile-pipeline"

    reply = client.sign_in(world.suite.token, next_path="/pipelines/hostile-pipeline")

    assert reply.location == "/pipelines/hostile-pipeline"


@pytest.mark.parametrize(
    "next_path", ["//evil.example/steal", "https://evil.example/", "/\\evil.example"]
)
def test_sign_in_never_redirects_off_the_console(world: World, next_path: str) -> None:
    reply = world.client().sign_in(world.suite.token, next_path=next_path)

    assert reply.location == "/steps"


def test_the_session_cookie_is_http_only_strict_and_new_at_sign_in(
    world: World,
) -> None:
    client = world.client()
    form = client.get("/sign-in")
    visitor_id = client.cookie
    assert "HttpOnly; SameSite=Strict" in form.headers["Set-Cookie"]

    reply = client.sign_in(world.suite.token)

    cookie = reply.headers["Set-Cookie"]
    assert cookie.startswith("stepforge_session=")
    assert "Path=/" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback
    assert client.cookie not in (None, visitor_id)
    assert world.suite.token not in cookie


def test_sign_out_ends_the_session(world: World) -> None:
    client = world.signed_in()
    old_cookie = client.cookie

    reply = client.post("/sign-out", {"csrf": client.csrf()})

    assert reply.location == "/sign-in?notice=signed-out"
    assert "Max-Age=0" in reply.headers["Set-Cookie"]
    assert "You are signed out." in client.get(reply.location).text
    client.cookie = old_cookie
    assert client.get("/steps").location == "/sign-in?next=%2Fsteps"


def test_a_revoked_token_sends_the_browser_back_to_sign_in(world: World) -> None:
    with opened_tenancy(world.suite.suite.data_dir) as tenancy:
        issued = issue_token(tenancy, "default", "default", "to be revoked")
    client = world.signed_in(issued.token)
    assert client.get("/steps").status == 200
    with opened_tenancy(world.suite.suite.data_dir) as tenancy:
        tenancy.revoke_token(issued.id)

    reply = client.get("/steps")

    assert reply.status == 303
    assert reply.location == "/sign-in?notice=token-rejected"
    assert "no longer accepts your token" in client.get(reply.location).text


# CSRF.


def test_a_sign_in_without_the_csrf_token_is_refused(world: World) -> None:
    client = world.client()
    client.get("/sign-in")

    reply = client.post("/sign-in", {"token": world.suite.token})

    assert reply.status == 403
    assert "The form has expired" in reply.text
    assert client.get("/steps").status == 303


def test_a_csrf_token_of_another_session_is_refused(world: World) -> None:
    victim = world.signed_in()
    attacker = world.signed_in()

    reply = victim.post("/sign-out", {"csrf": attacker.csrf()})

    assert reply.status == 403
    assert victim.get("/steps").status == 200


def test_a_cancel_without_the_csrf_token_is_refused(world: World) -> None:
    client = world.signed_in()

    reply = client.post(f"/executions/{world.produced_execution}/cancel", {})

    assert reply.status == 403


# Escaping.


def test_hostile_text_of_a_step_is_shown_as_text(world: World) -> None:
    page = world.signed_in().get("/steps/hostile").text

    assert HOSTILE not in page
    assert f"Describes itself as {ESCAPED_HOSTILE}" in page
    assert "&lt;script&gt;" in page.split("<h2>Inputs</h2>")[1].split("</section>")[0]


def test_hostile_log_lines_are_shown_as_text(world: World) -> None:
    client = world.signed_in()

    page = client.get(f"/executions/{world.hostile_execution}").text

    assert HOSTILE not in page
    assert f"stdout says {ESCAPED_HOSTILE}" in page
    assert f"stderr says {ESCAPED_HOSTILE}" in page


def test_live_events_carry_log_lines_as_json_data(world: World) -> None:
    client = world.signed_in()

    reply = client.get(f"/executions/{world.hostile_execution}/events")

    assert reply.headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(reply.body)
    texts = [data["text"] for name, data in events if name == "line"]
    assert f"stdout says {HOSTILE}" in texts
    assert events[-1] == ("end", {})
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


# What each page shows.


def test_the_step_page_shows_io_types_defaults_config_and_build_log(
    world: World,
) -> None:
    page = world.signed_in().get("/steps/produces").text

    assert "status-ready" in page
    assert "<code>size</code></td><td>number</td><td>required</td>" in page
    assert "<code>blob</code></td><td>file</td>" in page
    assert "Container configuration" in page
    assert "python:3." in page
    assert "local folder" in page
    assert "is ready" in page  # the end of the build log
    assert 'href="/pipelines/produces-pipeline"' in page


def test_the_pipeline_pages_show_the_step_and_its_inputs(world: World) -> None:
    client = world.signed_in()

    listing = client.get("/pipelines").text
    page = client.get("/pipelines/produces-pipeline").text

    assert 'href="/pipelines/waits-pipeline"' in listing
    assert 'href="/steps/produces"' in page
    assert "<code>size</code>" in page
    assert world.produced_execution in page


def test_the_executions_pages_show_status_times_inputs_and_outputs(
    world: World,
) -> None:
    client = world.signed_in()

    listing = client.get("/executions").text
    page = client.get(f"/executions/{world.produced_execution}").text

    assert f'href="/executions/{world.produced_execution}"' in listing
    assert "status-succeeded" in listing
    assert "status-succeeded" in page
    assert "Started" in page and "Ended" in page and "<time" in page
    assert f"<code>{len(FILE_OUTPUT)}</code>" in page  # the number output
    assert f'href="/executions/{world.produced_execution}/outputs/blob"' in page
    assert "Cancel execution" not in page


def test_the_executions_list_filters_by_pipeline(world: World) -> None:
    page = world.signed_in().get("/executions?pipeline=hostile-pipeline").text

    assert world.hostile_execution in page
    assert world.produced_execution not in page


# Confinement to the token's environment.


def test_another_environments_token_sees_none_of_these_resources(
    world: World,
) -> None:
    client = world.signed_in(world.other_token)
    execution = world.produced_execution

    assert "No steps in this environment yet" in client.get("/steps").text
    assert "No pipelines in this environment yet" in client.get("/pipelines").text
    assert execution not in client.get("/executions").text
    assert client.get("/steps/produces").status == 404
    assert client.get("/pipelines/produces-pipeline").status == 404
    assert client.get(f"/executions/{execution}").status == 404
    assert client.get(f"/executions/{execution}/outputs/blob").status == 404
    assert client.get(f"/executions/{execution}/log.txt").status == 404
    assert client.get(f"/executions/{execution}/events").status == 404


# Downloads.


def test_a_file_output_downloads_with_its_exact_bytes(world: World) -> None:
    client = world.signed_in()

    reply = client.get(f"/executions/{world.produced_execution}/outputs/blob")

    assert reply.status == 200
    assert reply.body == FILE_OUTPUT
    assert reply.headers["Content-Length"] == str(len(FILE_OUTPUT))
    assert reply.headers["Content-Type"] == "application/octet-stream"
    assert reply.headers["Content-Disposition"].startswith(
        'attachment; filename="blob"'
    )


def test_a_json_output_or_a_missing_one_is_not_a_download(world: World) -> None:
    client = world.signed_in()
    base = f"/executions/{world.produced_execution}/outputs"

    assert client.get(f"{base}/size").status == 409
    assert client.get(f"{base}/nothing").status == 404


def test_the_whole_log_downloads_as_text(world: World) -> None:
    client = world.signed_in()

    reply = client.get(f"/executions/{world.hostile_execution}/log.txt")

    assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert "attachment" in reply.headers["Content-Disposition"]
    lines = reply.text.splitlines()
    assert any(line.endswith(f"stdout stdout says {HOSTILE}") for line in lines)
    assert any(" stderr stderr says " in line for line in lines)


# Running executions: live logs, status and cancel.


def test_live_events_resume_after_the_last_event_id(world: World) -> None:
    client = world.signed_in()
    path = f"/executions/{world.hostile_execution}/events"
    first = [data for name, data in sse_events(client.get(path).body) if name == "line"]
    sequences = [data["sequence"] for data in first]

    resumed = client.get(path, headers={"Last-Event-ID": str(sequences[1])})

    later = [data for name, data in sse_events(resumed.body) if name == "line"]
    assert [data["sequence"] for data in later] == sequences[2:]


def test_a_running_execution_streams_its_log_and_can_be_cancelled(
    world: World,
) -> None:
    world.markers.mkdir(exist_ok=True)
    marker = world.markers / "cancelled"
    execution = world.suite.sdk.run_pipeline(
        "waits-pipeline", inputs={"marker": str(marker)}, wait=False
    )["execution_id"]
    assert eventually(lambda: logged(world, execution, "waiting for cancelled"))
    client = world.signed_in()
    page = client.get(f"/executions/{execution}").text
    assert 'data-live="true"' in page
    assert "Cancel execution" in page
    streamed: list[tuple[str, dict[str, object]]] = []
    follower = threading.Thread(
        target=lambda: streamed.extend(
            sse_events(client.get(f"/executions/{execution}/events").body)
        )
    )
    follower.start()
    marker.touch()
    assert eventually(lambda: logged(world, execution, "marker seen: console"))

    reply = client.post(f"/executions/{execution}/cancel", {"csrf": client.csrf()})

    follower.join(timeout=30)
    assert reply.status == 303
    assert reply.location == f"/executions/{execution}"
    status = json.loads(client.get(f"/executions/{execution}/status").body)
    assert status["status"] == "Cancelled"
    assert status["active"] is False
    texts = [data.get("text") for name, data in streamed if name == "line"]
    assert "waiting for cancelled" in texts
    assert "marker seen: console" in texts
    assert streamed[-1][0] == "end"
    again = client.post(f"/executions/{execution}/cancel", {"csrf": client.csrf()})
    assert again.status == 409


def test_a_live_stream_ends_after_its_window_and_the_browser_resumes_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "LIVE_WINDOW_S", 0.5)
    world.markers.mkdir(exist_ok=True)
    marker = world.markers / "windowed"
    execution = world.suite.sdk.run_pipeline(
        "waits-pipeline", inputs={"marker": str(marker)}, wait=False
    )["execution_id"]
    assert eventually(lambda: logged(world, execution, "waiting for windowed"))
    client = world.signed_in()
    path = f"/executions/{execution}/events"

    first = sse_events(client.get(path).body)

    assert [name for name, _ in first][-1] == "line"  # no end: it still runs
    last_seen = first[-1][1]["sequence"]
    marker.touch()
    Path(f"{marker}.done").touch()
    assert eventually(lambda: logged(world, execution, "marker seen: console"))
    resumed = sse_events(
        client.get(path, headers={"Last-Event-ID": str(last_seen)}).body
    )
    texts = [data.get("text") for name, data in resumed if name == "line"]
    assert "waiting for windowed" not in texts
    assert "marker seen: console" in texts


def logged(world: World, execution_id: str, text: str) -> bool:
    lines = world.suite.sdk.get_pipeline_execution_logs(execution_id)
    return any(line["message"] == text for line in lines)


# Errors, headers and static files.


def test_an_unknown_step_is_a_404_page(world: World) -> None:
    reply = world.signed_in().get("/steps/no-such-step")

    assert reply.status == 404
    assert "Not found" in reply.text
    assert "Back to the console" in reply.text


def test_a_page_without_a_session_redirects_and_data_answers_401(
    world: World,
) -> None:
    client = world.client()

    page = client.get(f"/executions/{world.produced_execution}")
    data = client.get(f"/executions/{world.produced_execution}/status")

    assert page.status == 303
    assert page.location.startswith("/sign-in?next=")
    assert data.status == 401
    assert json.loads(data.body)["signIn"] is True


def test_every_answer_carries_the_security_headers(world: World) -> None:
    client = world.client()

    for reply in (client.get("/sign-in"), client.get("/nowhere"), client.get("/")):
        policy = reply.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["X-Frame-Options"] == "DENY"


def test_pages_have_no_inline_script_or_style(world: World) -> None:
    client = world.signed_in()

    for path in ("/steps", "/steps/hostile", f"/executions/{world.hostile_execution}"):
        page = client.get(path).text
        assert "<script>" not in page
        assert "<style" not in page
        assert " style=" not in page
        assert " onclick=" not in page


def test_static_files_are_served_with_their_types(world: World) -> None:
    client = world.client()
    page = client.get("/sign-in").text
    stylesheet = page.split('rel="stylesheet" href="')[1].split('"')[0]
    script = page.split('<script src="')[1].split('"')[0]

    css = client.get(stylesheet)
    js = client.get(script)

    assert css.headers["Content-Type"] == "text/css; charset=utf-8"
    assert b".topbar" in css.body
    assert js.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert b"EventSource" in js.body
    assert client.get("/static/missing.js").status == 404


def test_a_wrong_method_or_an_oversized_form_is_refused(world: World) -> None:
    client = world.signed_in()

    wrong_method = client.post("/steps", {"csrf": "x"})
    oversized = client.post("/sign-in", {"token": "x" * 20_000})

    assert wrong_method.status == 405
    assert wrong_method.headers["Allow"] == "GET"
    assert oversized.status == 413
