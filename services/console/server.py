"""Starting and stopping a console."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import grpc

from stepforge._channel import open_channel
from stepforge.services.console.app import ConsoleApp
from stepforge.services.console.assets import StaticAssets
from stepforge.services.console.context import ConsoleContext
from stepforge.services.console.environment import EnvironmentReader
from stepforge.services.console.http_server import ConsoleHttpServer, tls_context
from stepforge.services.console.routes import ROUTES
from stepforge.services.console.sessions import SessionStore
from stepforge.services.console.settings import ConsoleSettings

logger = logging.getLogger(__name__)


@dataclass
class RunningConsole:
    """A console serving in a thread of its own until `stop`."""

    url: str
    port: int
    _server: ConsoleHttpServer
    _thread: threading.Thread
    _channel: grpc.Channel

    def stop(self) -> None:
        """Stops serving and ends the calls in flight; safe to call twice."""
        if not self._thread.is_alive():
            return
        self._server.shutdown()
        self._server.server_close()
        # Closing the channel ends the live log streams still open.
        self._channel.close()
        self._thread.join()
        logger.info("the console at %s stopped", self.url)


def start_console(settings: ConsoleSettings) -> RunningConsole:
    """Serves the console for `settings.environment_url` on `settings.host`
    and `settings.port`; raises OSError when it cannot listen there and
    ValueError when a certificate cannot be read."""
    tls = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        try:
            tls = tls_context(str(settings.tls_cert), str(settings.tls_key))
        except (OSError, ValueError) as error:
            raise ValueError(f"tls_cert: cannot be loaded: {error}") from None
    channel = open_channel(
        settings.environment_url,
        ca_cert=str(settings.ca_cert) if settings.ca_cert else None,
        client_cert=str(settings.client_cert) if settings.client_cert else None,
        client_key=str(settings.client_key) if settings.client_key else None,
    )
    context = ConsoleContext(
        settings,
        EnvironmentReader(channel),
        SessionStore(settings.session_idle_s, settings.session_max_s),
        StaticAssets(),
    )
    app = ConsoleApp(context, ROUTES)
    try:
        server = ConsoleHttpServer(
            (settings.host, settings.port),
            app.handle,
            context.cookie_name,
            tls,
        )
    except OSError:
        channel.close()
        raise
    port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, name="console", daemon=True)
    thread.start()
    url = _url(settings, port)
    logger.info("serving the console of %s on %s", settings.environment_url, url)
    return RunningConsole(url, port, server, thread, channel)


def _url(settings: ConsoleSettings, port: int) -> str:
    scheme = "https" if settings.serves_tls else "http"
    host = settings.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"
