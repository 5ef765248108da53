"""Copying a pod's log into an execution's log, line by line, as it runs.

The pod log API merges a container's stdout and stderr into one stream and
does not say which line came from which, so every line is stored as stdout;
the local backend keeps the two apart.
"""

from __future__ import annotations

import logging
import threading

from stepforge.services.execution.limits import OutputBudget
from stepforge.services.execution.logs import LogBook
from stepforge.services.kubernetes.api import KubeApi, Stream
from stepforge.v1 import execution_pb2

logger = logging.getLogger(__name__)

STDOUT = execution_pb2.LOG_STREAM_STDOUT
# A line longer than this is stored cut; the rest is counted, not kept, as the
# local backend does.
READ_CHUNK_BYTES = 1024 * 1024


class PodLogFollower:
    """Follows the logs of one execution's pods, one pod at a time."""

    def __init__(
        self,
        kube: KubeApi,
        container: str,
        logs: LogBook,
        execution: str,
        budget: OutputBudget,
    ) -> None:
        self._kube = kube
        self._container = container
        self._logs = logs
        self._execution = execution
        self._budget = budget
        self._lock = threading.Lock()
        self._stream: Stream | None = None
        self._stopped = False

    def follow(self, pod: str, skip_lines: int) -> int:
        """Stores the lines of `pod`'s log after the first `skip_lines`, until
        the container ends, the stream breaks or `stop` is called; returns how
        many lines of the log have been seen, skipped ones included.

        Lines already stored (by an earlier stream, or before a restart of the
        service) are skipped by count: the log is read again from its start.
        """
        stream = self._kube.pod_log(
            pod,
            self._container,
            follow=True,
            # No read timeout: a step may print nothing for hours.
            read_timeout_s=None,
        )
        with self._lock:
            if self._stopped:
                stream.close()
                return skip_lines
            self._stream = stream
        seen = 0
        try:
            buffer = bytearray()
            continues_line = False
            while True:
                chunk = stream.read(READ_CHUNK_BYTES)
                if chunk:
                    buffer += chunk
                start = 0
                while start < len(buffer):
                    end = buffer.find(b"\n", start)
                    cut = start + READ_CHUNK_BYTES
                    if 0 <= end < cut:
                        cut = end + 1
                    elif end < 0 and len(buffer) < cut and chunk:
                        break
                    piece = bytes(buffer[start:cut])
                    start += len(piece)
                    if not continues_line:
                        seen += 1
                    if seen > skip_lines:
                        self._store(piece, continues_line)
                    else:
                        self._budget.spend(len(piece))
                    continues_line = not piece.endswith(b"\n")
                del buffer[:start]
                if not chunk:
                    break
        except Exception as error:
            if not self._stopped:
                logger.info(
                    "the log stream of pod %s broke: %s; it is read again", pod, error
                )
        finally:
            with self._lock:
                self._stream = None
            stream.close()
        return max(seen, skip_lines)

    def stop(self) -> None:
        """Ends the current stream and any later one."""
        with self._lock:
            self._stopped = True
            stream = self._stream
        if stream is not None:
            stream.interrupt()

    def _store(self, piece: bytes, continues_line: bool) -> None:
        # The rest of a line longer than a chunk is counted, not stored: the
        # log cuts such a line anyway.
        if self._budget.spend(len(piece)) and not continues_line:
            text = piece.decode("utf-8", "replace").rstrip("\r\n")
            self._logs.write(self._execution, STDOUT, text)
