"""The one way Stepforge talks to a cluster: Jobs, their pods and pod logs in
one namespace, on plain JSON.

Objects come back as the API server's own JSON (camelCase keys), the form the
Job manifests are written in. Every request has a timeout, and every failure
becomes a KubeError that names the action and what the API server said.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stepforge.services.kubernetes.client import MISSING_CLIENT

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0
# A watch that stays silent this long past its own timeout has lost its
# connection.
WATCH_GRACE_S = 30.0
_READ_BYTES = 64 * 1024


class KubeError(Exception):
    """The API server could not be reached or refused a call; says which.

    `status` is the HTTP status of a refusal (None when there was no answer);
    `detail` is what the API server said, or why it could not be reached.
    """

    def __init__(
        self, message: str, *, status: int | None = None, detail: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or message


class JobExists(KubeError):
    """A Job of that name is already there."""


class WatchExpired(KubeError):
    """The server no longer holds the resourceVersion a watch asked for (410
    Gone): list again and watch from the listing's version."""


@dataclass(frozen=True)
class JobList:
    items: list[dict[str, Any]]
    # Where a watch of the same Jobs starts to miss nothing after the listing.
    resource_version: str


class KubeApi:
    """Jobs, their pods and pod logs in one namespace."""

    def __init__(self, api_client: ApiClient, namespace: str) -> None:
        try:
            from kubernetes.client import BatchV1Api, CoreV1Api
        except ImportError:
            raise RuntimeError(MISSING_CLIENT) from None
        self._client = api_client
        self._batch = BatchV1Api(api_client)
        self._core = CoreV1Api(api_client)
        self.namespace = namespace
        self._streams: set[Stream] = set()
        self._streams_lock = threading.Lock()

    def create_job(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Creates the Job; raises JobExists when its name is taken."""
        name = manifest["metadata"]["name"]
        try:
            return self._call(
                f"creating Job {name}",
                self._batch.create_namespaced_job,
                self.namespace,
                manifest,
            )
        except KubeError as error:
            if error.status == 409:
                raise JobExists(
                    f"Job {name} already exists", status=409, detail=error.detail
                ) from None
            raise

    def read_job(self, name: str) -> dict[str, Any] | None:
        """The Job, or None when there is none of that name."""
        try:
            return self._call(
                f"reading Job {name}",
                self._batch.read_namespaced_job,
                name,
                self.namespace,
            )
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def delete_job(self, name: str) -> None:
        """Deletes the Job and, in the background, its pods; a Job that is
        already gone is not an error."""
        try:
            self._call(
                f"deleting Job {name}",
                self._batch.delete_namespaced_job,
                name,
                self.namespace,
                propagation_policy="Background",
            )
        except KubeError as error:
            if error.status != 404:
                raise

    def list_jobs(self, label_selector: str) -> JobList:
        """The Jobs that match `label_selector`, and the listing's version."""
        listed = self._call(
            f"listing the Jobs labelled {label_selector}",
            self._batch.list_namespaced_job,
            self.namespace,
            label_selector=label_selector,
        )
        return JobList(
            list(listed.get("items") or []),
            str(listed.get("metadata", {}).get("resourceVersion", "")),
        )

    def watch_jobs(
        self, label_selector: str, resource_version: str, timeout_s: int
    ) -> Watch:
        """The changes to the Jobs that match `label_selector` after
        `resource_version`, until the server ends the watch after `timeout_s`.

        Raises WatchExpired, here or while reading the events, when the
        server no longer holds that version.
        """
        action = f"watching the Jobs labelled {label_selector}"
        try:
            response = self._batch.list_namespaced_job(
                self.namespace,
                label_selector=label_selector,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_s,
                _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT_S, timeout_s + WATCH_GRACE_S),
            )
        except Exception as error:
            failure = _failure(action, error)
            if failure.status == 410:
                raise WatchExpired(
                    str(failure), status=410, detail=failure.detail
                ) from None
            raise failure from None
        watch = Watch(response, action, self._forget)
        self._remember(watch)
        return watch

    def job_pods(self, job: str, owner_uid: str | None = None) -> list[dict[str, Any]]:
        """The pods of the Job named `job`, oldest first; with `owner_uid`,
        only those the Job of that uid made (not an earlier one of the same
        name)."""
        listed = self._call(
            f"listing the pods of Job {job}",
            self._core.list_namespaced_pod,
            self.namespace,
            label_selector=f"job-name={job}",
        )
        pods = [
            pod
            for pod in listed.get("items") or []
            if owner_uid is None
            or any(
                owner.get("uid") == owner_uid
                for owner in pod["metadata"].get("ownerReferences", [])
            )
        ]
        return sorted(
            pods,
            key=lambda pod: (
                pod["metadata"].get("creationTimestamp") or "",
                pod["metadata"]["name"],
            ),
        )

    def pod_log(
        self,
        pod: str,
        container: str,
        *,
        follow: bool,
        read_timeout_s: float | None,
        since_time: str | None = None,
        timestamps: bool = False,
    ) -> Stream:
        """The container's log from its start, or from `since_time` (RFC
        3339); with `follow`, until the container ends. `timestamps` prefixes
        each line with its RFC 3339 time and a space. A `read_timeout_s` of
        None waits for the next bytes for as long as it takes."""
        query: list[tuple[str, Any]] = [
            ("container", container),
            ("timestamps", "true" if timestamps else "false"),
            ("follow", "true" if follow else "false"),
        ]
        if since_time:
            query.append(("sinceTime", since_time))
        what = f"the log of {pod}/{container}"
        try:
            # Through call_api: the generated method cannot ask for sinceTime.
            response = self._client.call_api(
                "/api/v1/namespaces/{namespace}/pods/{name}/log",
                "GET",
                {"namespace": self.namespace, "name": pod},
                query,
                {"Accept": "*/*"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=(CONNECT_TIMEOUT_S, read_timeout_s),
            )
        except Exception as error:
            raise _failure(f"reading {what}", error) from None
        stream = Stream(response, f"streaming {what}", self._forget)
        self._remember(stream)
        return stream

    def log_lines(
        self,
        pod: str,
        container: str,
        *,
        follow: bool,
        since_time: str | None,
        read_timeout_s: float,
    ) -> Iterator[str]:
        """The container's log lines, each prefixed with its RFC 3339 time;
        with `follow`, until the container ends or the stream breaks."""
        with self.pod_log(
            pod,
            container,
            follow=follow,
            read_timeout_s=read_timeout_s,
            since_time=since_time,
            timestamps=True,
        ) as stream:
            for line in stream.lines():
                yield line.decode("utf-8", "replace")

    def interrupt_streams(self) -> None:
        """Ends every log stream and watch being read, from any thread."""
        with self._streams_lock:
            streams = list(self._streams)
        for stream in streams:
            stream.interrupt()

    def _call(
        self, action: str, method: Callable[..., Any], *args: Any, **options: Any
    ) -> dict[str, Any]:
        try:
            response = method(
                *args,
                **options,
                _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S),
            )
            try:
                loaded: dict[str, Any] = json.loads(response.data)
            finally:
                response.release_conn()
        except Exception as error:
            raise _failure(action, error) from None
        return loaded

    def _remember(self, stream: Stream) -> None:
        with self._streams_lock:
            self._streams.add(stream)

    def _forget(self, stream: Stream) -> None:
        with self._streams_lock:
            self._streams.discard(stream)


class Stream:
    """An answer read as it arrives. `interrupt` ends it from any thread;
    `close` (or leaving a `with` block) lets its connection go."""

    def __init__(
        self, response: Any, action: str, on_close: Callable[[Stream], None]
    ) -> None:
        self._response = response
        self._action = action
        self._on_close = on_close
        self._closed = False

    def read(self, size: int) -> bytes:
        """What has arrived, at most `size` bytes, waiting for some if none
        has; b"" once the stream has ended."""
        try:
            data: bytes = self._response.read1(size)
        except Exception as error:
            raise _failure(self._action, error) from None
        return data

    def lines(self) -> Iterator[bytes]:
        """The stream's lines without their line ends, each as soon as it is
        whole; a last line without an end comes when the stream ends."""
        pending = b""
        while chunk := self.read(_READ_BYTES):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            yield from complete
        if pending:
            yield pending

    def interrupt(self) -> None:
        """Makes a read blocked on this stream in another thread return."""
        try:
            self._response.shutdown()
        except Exception:  # a stream that just ended is no concern
            logger.debug("shutting a stream down failed", exc_info=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._on_close(self)
        self._response.release_conn()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Watch(Stream):
    """The events of a watch, in the order the server sends them."""

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """`(type, object)` pairs: ADDED, MODIFIED, DELETED or BOOKMARK,
        until the server ends the watch. Raises WatchExpired when the server
        no longer holds the version the watch started from."""
        for line in self.lines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                kind, obj = str(event.get("type")), event.get("object") or {}
            except (ValueError, AttributeError):
                raise KubeError(
                    f"{self._action} failed: the API server sent "
                    f"{line[:200]!r}, not an event"
                ) from None
            if kind == "ERROR":
                message = str(obj.get("message") or "")
                if obj.get("code") == 410:
                    raise WatchExpired(
                        f"{self._action} failed: HTTP 410: {message}",
                        status=410,
                        detail=message,
                    )
                raise KubeError(
                    f"{self._action} failed: the watch answered {message}",
                    detail=message,
                )
            yield kind, obj

    def __enter__(self) -> Watch:
        return self


def final_condition(job: dict[str, Any] | None) -> dict[str, Any] | None:
    """The Job's Complete or Failed condition, once it holds one."""
    for condition in ((job or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and (
            condition.get("status") == "True"
        ):
            return dict(condition)
    return None


def _status(error: Exception) -> int | None:
    status = getattr(error, "status", None)
    return status if isinstance(status, int) else None


def _failure(action: str, error: Exception) -> KubeError:
    status = _status(error)
    if status:
        body = getattr(error, "body", None) or getattr(error, "reason", "")
        message = _message(body)
        return KubeError(
            f"{action} failed: HTTP {status}: {message}", status=status, detail=message
        )
    return KubeError(
        f"{action} failed: the API server did not answer: {error}", detail=str(error)
    )


def _message(body: Any) -> str:
    """The `message` of a Status body, or the body itself."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(body)
    except (TypeError, ValueError):
        return str(body)[:500]
    if isinstance(parsed, dict) and parsed.get("message"):
        return str(parsed["message"])
    return str(body)[:500]
