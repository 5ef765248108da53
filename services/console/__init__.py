"""The web console: one environment's steps, pipelines and executions in a browser.

`start_console(ConsoleSettings(environment_url=...))` serves it in a thread
and returns a `RunningConsole` with its `url`, `port` and `stop()`. It reads
the suite through the public gRPC services with the token each user signs in
with, and holds no credential of its own.
"""

from stepforge.services.console.server import RunningConsole, start_console
from stepforge.services.console.settings import ConsoleSettings

__all__ = ["ConsoleSettings", "RunningConsole", "start_console"]
