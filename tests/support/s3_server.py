"""A real S3-protocol server on loopback (moto), for tests of the S3 store."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO
from urllib.parse import quote

from support.processes import output_tail, stop

START_TIMEOUT_S = 20.0
_POLL_S = 0.1


@dataclass(frozen=True)
class S3Endpoint:
    """Where the test server listens; moto accepts any keys."""

    endpoint: str
    access_key: str = "test-access-key"
    secret_key: str = "test-secret-key"

    def url(self, bucket: str) -> str:
        """An `s3://` URL for `open_object_store` naming `bucket` on this server."""
        access = quote(self.access_key, safe="")
        secret = quote(self.secret_key, safe="")
        return f"s3://{access}:{secret}@{self.endpoint}/{bucket}?secure=false"


@contextmanager
def running_s3_server(port: int | None = None) -> Iterator[S3Endpoint]:
    """Starts moto on `port` (a free loopback port when None); stops it when
    the block ends."""
    port = port or free_port()
    # A file, not a pipe, takes the server's request log: an unread pipe would
    # fill and stall the server.
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_answering(server, port, log)
            yield S3Endpoint(endpoint=f"127.0.0.1:{port}")
        finally:
            stop(server)


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_answering(
    server: subprocess.Popen[bytes], port: int, log: IO[bytes]
) -> None:
    # Loopback must never go through a proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.poll() is not None:
            raise RuntimeError(
                f"the moto S3 server exited with code {server.returncode} before "
                f"answering on port {port}; its output:\n{output_tail(log)}"
            )
        try:
            with opener.open(f"http://127.0.0.1:{port}/", timeout=1.0):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the moto S3 server did not answer on port {port} within "
                f"{START_TIMEOUT_S:.0f} s; its output:\n{output_tail(log)}"
            )
        time.sleep(_POLL_S)
