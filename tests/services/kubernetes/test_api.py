"""The cluster wrapper against the fake cluster: Jobs, pods, logs and watches
as plain JSON, and every refusal as a KubeError that says what failed."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.fake_kube import FakeCluster
from support.kube_jobs import container_state, host_cluster, kube_api, shell_job
from support.waiting import eventually

from stepforge.services.kubernetes.api import (
    JobExists,
    KubeApi,
    KubeError,
    WatchExpired,
)

NAMESPACE = "steps"
SELECTED = {"app": "selected"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    with host_cluster(tmp_path) as running:
        yield running


@pytest.fixture
def kube(cluster: FakeCluster) -> KubeApi:
    return kube_api(cluster.kubeconfig, NAMESPACE)


def test_create_job_returns_the_created_job_as_the_servers_json(
    kube: KubeApi, cluster: FakeCluster
) -> None:
    job = kube.create_job(shell_job("first", "true"))

    assert job["metadata"]["namespace"] == NAMESPACE
    assert job["metadata"]["uid"]
    assert job["spec"]["backoffLimit"] == 0
    assert [created["metadata"]["name"] for created in cluster.created("Job")] == [
        "first"
    ]


def test_creating_a_job_whose_name_is_taken_raises_job_exists(kube: KubeApi) -> None:
    kube.create_job(shell_job("taken", "sleep 30"))

    with pytest.raises(JobExists, match="Job taken already exists") as raised:
        kube.create_job(shell_job("taken", "true"))

    assert raised.value.status == 409
    assert "already exists" in raised.value.detail


def test_a_job_the_cluster_refuses_names_the_action_and_the_servers_message(
    kube: KubeApi,
) -> None:
    manifest = shell_job("refused", "true")
    manifest["spec"]["backoffLimit"] = "never"

    with pytest.raises(KubeError) as raised:
        kube.create_job(manifest)

    assert raised.value.status == 422
    assert str(raised.value).startswith("creating Job refused failed: HTTP 422: ")
    assert raised.value.detail in str(raised.value)
    assert not isinstance(raised.value, JobExists)


def test_read_job_gives_the_job_or_none_when_there_is_none(kube: KubeApi) -> None:
    created = kube.create_job(shell_job("present", "sleep 30"))

    found = kube.read_job("present")

    assert found is not None
    assert found["metadata"]["uid"] == created["metadata"]["uid"]
    assert kube.read_job("absent") is None


def test_delete_job_removes_the_job_and_its_pods(
    kube: KubeApi, cluster: FakeCluster
) -> None:
    kube.create_job(shell_job("doomed", "sleep 30"))
    assert eventually(lambda: _running(kube, "doomed"))

    kube.delete_job("doomed")

    assert kube.read_job("doomed") is None
    assert eventually(lambda: not cluster.objects("Pod", NAMESPACE))


def test_deleting_a_job_that_is_gone_is_not_an_error(kube: KubeApi) -> None:
    kube.delete_job("never-made")

    assert kube.read_job("never-made") is None


def test_list_jobs_selects_by_label_and_gives_the_listings_version(
    kube: KubeApi,
) -> None:
    chosen = kube.create_job(shell_job("chosen", "sleep 30", labels=SELECTED))
    kube.create_job(shell_job("other", "sleep 30", labels={"app": "other"}))

    listing = kube.list_jobs("app=selected")

    assert [item["metadata"]["name"] for item in listing.items] == ["chosen"]
    assert int(listing.resource_version) >= int(chosen["metadata"]["resourceVersion"])


def test_a_watch_reports_the_changes_after_its_version_until_it_times_out(
    kube: KubeApi,
) -> None:
    kube.create_job(shell_job("before", "true", labels=SELECTED))
    version = kube.list_jobs("app=selected").resource_version
    kube.create_job(shell_job("after", "true", labels=SELECTED))
    kube.create_job(shell_job("unselected", "true"))

    with kube.watch_jobs("app=selected", version, timeout_s=1) as watch:
        events = list(watch.events())

    seen = [(kind, job["metadata"]["name"]) for kind, job in events]
    assert {name for _, name in seen} <= {"before", "after"}
    assert ("ADDED", "before") not in seen
    assert [kind for kind, name in seen if name == "after"][0] == "ADDED"
    versions = [int(job["metadata"]["resourceVersion"]) for _, job in events]
    assert versions == sorted(versions) and versions[0] > int(version)


def test_a_watch_from_a_version_the_server_forgot_raises_watch_expired(
    kube: KubeApi,
) -> None:
    # The fake cluster's history starts at version 1: -1 is older than that.
    with kube.watch_jobs("app=selected", "-1", timeout_s=1) as watch:
        with pytest.raises(WatchExpired) as raised:
            list(watch.events())

    assert raised.value.status == 410
    assert "too old resource version" in raised.value.detail


def test_a_410_answer_to_a_watch_request_raises_watch_expired(tmp_path: Path) -> None:
    status = {"kind": "Status", "code": 410, "message": "too old resource version"}
    with _answering(tmp_path, 410, json.dumps(status).encode()) as kube:
        with pytest.raises(WatchExpired, match="too old resource version"):
            kube.watch_jobs("app=selected", "7", timeout_s=1)


def test_an_error_event_other_than_410_is_a_kube_error(tmp_path: Path) -> None:
    event = {"type": "ERROR", "object": {"code": 500, "message": "etcd is unhappy"}}
    with _answering(tmp_path, 200, json.dumps(event).encode() + b"\n") as kube:
        with kube.watch_jobs("app=selected", "7", timeout_s=1) as watch:
            with pytest.raises(KubeError, match="the watch answered etcd") as raised:
                list(watch.events())

    assert not isinstance(raised.value, WatchExpired)


def test_job_pods_lists_the_pods_of_that_very_job(kube: KubeApi) -> None:
    job = kube.create_job(shell_job("owner", "sleep 30"))
    assert eventually(lambda: bool(kube.job_pods("owner")))

    (pod,) = kube.job_pods("owner")
    owned = kube.job_pods("owner", job["metadata"]["uid"])

    assert pod["metadata"]["labels"]["job-name"] == "owner"
    assert [item["metadata"]["uid"] for item in owned] == [pod["metadata"]["uid"]]
    assert kube.job_pods("owner", "uid-of-an-earlier-job") == []
    assert kube.job_pods("no-such-job") == []


def test_pod_log_follows_a_container_until_it_ends(kube: KubeApi) -> None:
    kube.create_job(shell_job("talker", "echo one; sleep 0.2; printf two"))
    pod = _started_pod(kube, "talker")

    with kube.pod_log(pod, "main", follow=True, read_timeout_s=30) as stream:
        lines = list(stream.lines())

    assert lines == [b"one", b"two"]


def test_log_lines_carry_their_time_and_start_from_since_time(kube: KubeApi) -> None:
    kube.create_job(shell_job("stamped", "echo one; echo two"))
    pod = _started_pod(kube, "stamped")
    assert eventually(lambda: _ended(kube, "stamped"))

    lines = list(
        kube.log_lines(pod, "main", follow=False, since_time=None, read_timeout_s=30)
    )
    first_time = lines[0].partition(" ")[0]
    since_first = kube.log_lines(
        pod, "main", follow=False, since_time=first_time, read_timeout_s=30
    )
    since_later = kube.log_lines(
        pod,
        "main",
        follow=False,
        since_time="2999-01-01T00:00:00Z",
        read_timeout_s=30,
    )

    assert [line.partition(" ")[2] for line in lines] == ["one", "two"]
    assert first_time.endswith("Z") and "T" in first_time
    assert list(since_first) == lines
    assert list(since_later) == []


def test_the_log_of_a_container_that_cannot_start_is_refused(
    kube: KubeApi,
) -> None:
    kube.create_job(shell_job("stuck", "true", image="registry.invalid/none:1"))
    assert eventually(lambda: bool(kube.job_pods("stuck")))
    (pod,) = kube.job_pods("stuck")
    name = pod["metadata"]["name"]

    with pytest.raises(KubeError) as raised:
        kube.pod_log(name, "main", follow=True, read_timeout_s=30)

    assert raised.value.status == 400
    assert str(raised.value).startswith(
        f"reading the log of {name}/main failed: HTTP 400: "
    )


def test_interrupt_streams_ends_a_followed_log_from_another_thread(
    kube: KubeApi,
) -> None:
    kube.create_job(shell_job("sleeper", "echo started; sleep 30"))
    pod = _started_pod(kube, "sleeper")

    with kube.pod_log(pod, "main", follow=True, read_timeout_s=60) as stream:
        received = b""
        while not received.endswith(b"\n"):
            chunk = stream.read(1024)
            assert chunk, "the log ended before the container did"
            received += chunk
        assert received == b"started\n"
        timer = threading.Timer(0.1, kube.interrupt_streams)
        timer.start()
        with pytest.raises(KubeError, match=f"streaming the log of {pod}/main"):
            while stream.read(1024):
                pass
        timer.join()


def test_a_wrong_token_is_refused_as_unauthorized(
    cluster: FakeCluster, tmp_path: Path
) -> None:
    kubeconfig = _kubeconfig(tmp_path / "wrong", cluster.url, "not-the-token")
    kube = kube_api(kubeconfig, NAMESPACE)

    with pytest.raises(KubeError) as raised:
        kube.read_job("any")

    assert raised.value.status == 401
    assert str(raised.value) == "reading Job any failed: HTTP 401: Unauthorized"
    with pytest.raises(KubeError, match="creating Job any failed: HTTP 401"):
        kube.create_job(shell_job("any", "true"))


def test_an_api_server_that_does_not_answer_is_said_to(tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    kubeconfig = _kubeconfig(tmp_path / "gone", f"http://127.0.0.1:{port}", "t")

    with pytest.raises(KubeError, match="the API server did not answer") as raised:
        kube_api(kubeconfig, NAMESPACE).list_jobs("app=selected")

    assert raised.value.status is None
    assert str(raised.value).startswith("listing the Jobs labelled app=selected")


def _started_pod(kube: KubeApi, job: str) -> str:
    """The name of the Job's pod, once its container has started."""
    assert eventually(lambda: _running(kube, job) or _ended(kube, job))
    return str(kube.job_pods(job)[-1]["metadata"]["name"])


def _running(kube: KubeApi, job: str) -> bool:
    pods = kube.job_pods(job)
    return bool(pods) and "running" in container_state(pods[-1])


def _ended(kube: KubeApi, job: str) -> bool:
    pods = kube.job_pods(job)
    return bool(pods) and "terminated" in container_state(pods[-1])


def _kubeconfig(path: Path, server: str, token: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(json.dumps(config))
    return path


@contextmanager
def _answering(tmp_path: Path, status: int, body: bytes) -> Iterator[KubeApi]:
    """The wrapper, for an API server on loopback that gives every request
    the same answer."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        yield kube_api(_kubeconfig(tmp_path / "answering", url, "t"), NAMESPACE)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
