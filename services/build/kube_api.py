"""The few Kubernetes API calls the image builder makes, on plain JSON.

Objects come back as the API server's own JSON (camelCase keys), the form the
Job manifests are written in.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stepforge.services.kubernetes.client import MISSING_CLIENT

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

REQUEST_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0
_LOG_CHUNK = 16 * 1024


class KubeError(Exception):
    """The API server could not be reached or refused a call; says which."""


class JobExists(KubeError):
    """A Job of that name is already there."""


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
        self._streams: set[Any] = set()
        self._streams_lock = threading.Lock()

    def create_job(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Creates the Job; raises JobExists when its name is taken."""
        name = manifest["metadata"]["name"]
        try:
            return self._json(
                self._batch.create_namespaced_job(
                    self.namespace,
                    manifest,
                    _preload_content=False,
                    _request_timeout=_timeouts(),
                )
            )
        except Exception as error:
            if _status(error) == 409:
                raise JobExists(f"Job {name} already exists") from None
            raise _failure(f"creating Job {name}", error) from None

    def read_job(self, name: str) -> dict[str, Any] | None:
        """The Job, or None when there is none of that name."""
        try:
            return self._json(
                self._batch.read_namespaced_job(
                    name,
                    self.namespace,
                    _preload_content=False,
                    _request_timeout=_timeouts(),
                )
            )
        except Exception as error:
            if _status(error) == 404:
                return None
            raise _failure(f"reading Job {name}", error) from None

    def delete_job(self, name: str) -> None:
        """Deletes the Job and, in the background, its pods; a Job that is
        already gone is not an error."""
        try:
            self._batch.delete_namespaced_job(
                name,
                self.namespace,
                propagation_policy="Background",
                _preload_content=False,
                _request_timeout=_timeouts(),
            )
        except Exception as error:
            if _status(error) != 404:
                raise _failure(f"deleting Job {name}", error) from None

    def job_pods(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The pods this very Job (not an earlier one of the same name) made,
        oldest first."""
        name = job["metadata"]["name"]
        uid = job["metadata"].get("uid")
        try:
            listed = self._json(
                self._core.list_namespaced_pod(
                    self.namespace,
                    label_selector=f"job-name={name}",
                    _preload_content=False,
                    _request_timeout=_timeouts(),
                )
            )
        except Exception as error:
            raise _failure(f"listing the pods of Job {name}", error) from None
        pods = [
            pod
            for pod in listed.get("items", [])
            if any(
                owner.get("uid") == uid
                for owner in pod["metadata"].get("ownerReferences", [])
            )
        ]
        return sorted(
            pods, key=lambda pod: pod["metadata"].get("creationTimestamp", "")
        )

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
        query: list[tuple[str, Any]] = [
            ("container", container),
            ("timestamps", "true"),
            ("follow", "true" if follow else "false"),
        ]
        if since_time:
            query.append(("sinceTime", since_time))
        try:
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
            raise _failure(f"reading the log of {pod}/{container}", error) from None
        with self._streams_lock:
            self._streams.add(response)
        try:
            pending = b""
            for chunk in response.stream(_LOG_CHUNK):
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line.decode("utf-8", "replace")
            if pending:
                yield pending.decode("utf-8", "replace")
        except Exception as error:
            raise _failure(f"streaming the log of {pod}/{container}", error) from None
        finally:
            with self._streams_lock:
                self._streams.discard(response)
            response.release_conn()

    def interrupt_streams(self) -> None:
        """Ends every log stream being read, from any thread."""
        with self._streams_lock:
            streams = list(self._streams)
        for response in streams:
            try:
                response.shutdown()
            except Exception:  # a stream that just ended is no concern
                pass

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = json.loads(response.data)
            return loaded
        finally:
            response.release_conn()


def _timeouts() -> tuple[float, float]:
    return (CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S)


def _status(error: Exception) -> int | None:
    status = getattr(error, "status", None)
    return status if isinstance(status, int) else None


def _failure(action: str, error: Exception) -> KubeError:
    status = _status(error)
    if status:
        body = getattr(error, "body", None) or getattr(error, "reason", "")
        return KubeError(f"{action} failed: HTTP {status}: {_message(body)}")
    return KubeError(f"{action} failed: the API server did not answer: {error}")


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
