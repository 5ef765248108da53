"""What every route handler works with: the reader, the sessions, the
settings, and how to frame a page and set the cookie."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stepforge.services.console.assets import StaticAssets
from stepforge.services.console.auth_pages import error_page
from stepforge.services.console.environment import EnvironmentReader
from stepforge.services.console.layout import Chrome, page
from stepforge.services.console.markup import Html
from stepforge.services.console.sessions import Session, SessionStore
from stepforge.services.console.settings import ConsoleSettings
from stepforge.services.console.web import Request, Response, html_response


@dataclass(frozen=True)
class ConsoleContext:
    settings: ConsoleSettings
    reader: EnvironmentReader
    sessions: SessionStore
    assets: StaticAssets

    @property
    def cookie_name(self) -> str:
        # The __Host- prefix makes browsers refuse the cookie unless it is
        # Secure, for this host only and for every path: no sibling domain
        # can plant one.
        if self.settings.secure_for_browsers:
            return "__Host-stepforge_session"
        return "stepforge_session"

    def set_cookie(self, value: str) -> tuple[str, str]:
        """The header that gives the browser `value` as its console cookie."""
        return ("Set-Cookie", f"{self.cookie_name}={value}; {self._attributes()}")

    def clear_cookie(self) -> tuple[str, str]:
        return ("Set-Cookie", f"{self.cookie_name}=; Max-Age=0; {self._attributes()}")

    def csrf_for(self, request: Request) -> str | None:
        """The CSRF token of the request's cookie; None without one."""
        if request.cookie is None:
            return None
        return self.sessions.csrf_token(request.cookie)

    def page(
        self,
        request: Request,
        title: str,
        content: Html,
        *,
        status: int = 200,
        section: str = "",
        crumbs: Sequence[tuple[str, str]] = (),
        refresh_s: int = 0,
    ) -> Response:
        """A page in the console's frame; the sign-out button shows when the
        request belongs to a session."""
        chrome = Chrome(
            environment_url=self.settings.environment_url,
            stylesheet=self.assets.url("console.css"),
            script=self.assets.url("console.js"),
            favicon=self.assets.url("favicon.svg"),
            csrf=self.csrf_for(request) if request.session else None,
        )
        framed = page(
            chrome,
            title,
            content,
            section=section,
            crumbs=crumbs,
            refresh_s=refresh_s,
        )
        return html_response(framed, status)

    def error(
        self, request: Request, status: int, title: str, message: str
    ) -> Response:
        """The error page: `title` and `message` with a way back."""
        return self.page(
            request, title, error_page(status, title, message), status=status
        )

    def _attributes(self) -> str:
        secure = "; Secure" if self.settings.secure_for_browsers else ""
        return f"Path=/; HttpOnly; SameSite=Strict{secure}"


def session_of(request: Request) -> Session:
    """The request's session, which routes that need one always have."""
    if request.session is None:
        raise AssertionError("a route that needs a session was reached without one")
    return request.session
