"""Sessions end when idle or old, and CSRF tokens are bound to a cookie."""

from __future__ import annotations

from stepforge.services.console.sessions import SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def store(clock: Clock) -> SessionStore:
    return SessionStore(idle_s=60, max_s=300, clock=clock)


def test_a_session_keeps_its_token_under_a_random_id() -> None:
    sessions = store(Clock())

    first = sessions.create("sf_token")
    second = sessions.create("sf_token")

    assert first.id != second.id
    assert len(first.id) >= 40
    found = sessions.get(first.id)
    assert found is not None and found.token == "sf_token"


def test_a_session_ends_after_the_idle_time() -> None:
    clock = Clock()
    sessions = store(clock)
    session = sessions.create("sf_token")

    clock.now += 61

    assert sessions.get(session.id) is None
    assert len(sessions) == 0


def test_use_renews_a_session_until_its_maximum_age() -> None:
    clock = Clock()
    sessions = store(clock)
    session = sessions.create("sf_token")

    for _ in range(5):
        clock.now += 50
        assert sessions.get(session.id) is not None
    clock.now += 51

    assert sessions.get(session.id) is None


def test_an_ended_session_is_gone() -> None:
    sessions = store(Clock())
    session = sessions.create("sf_token")

    sessions.end(session.id)
    sessions.end(session.id)

    assert sessions.get(session.id) is None


def test_a_csrf_token_matches_its_own_cookie_only() -> None:
    sessions = store(Clock())
    token = sessions.csrf_token("cookie-a")

    assert sessions.csrf_matches("cookie-a", token)
    assert not sessions.csrf_matches("cookie-b", token)
    assert not sessions.csrf_matches(None, token)
    assert not sessions.csrf_matches("cookie-a", None)
    assert not sessions.csrf_matches("cookie-a", "")


def test_csrf_tokens_differ_between_consoles() -> None:
    assert store(Clock()).csrf_token("cookie") != store(Clock()).csrf_token("cookie")
