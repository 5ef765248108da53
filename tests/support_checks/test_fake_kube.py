"""The fake Kubernetes cluster behaves as the real `kubernetes` client expects
of a cluster: Jobs run, fail, time out, expire and are deleted; pods are
scheduled by selector, taints and GPUs; logs stream; watches see changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from support.fake_kube import FakeCluster, FakeNode, rewrite_paths
from support.fake_kube.errors import ApiError
from support.fake_kube.state import ObjectStore, follow_changes
from support.kube_jobs import HOST_IMAGE, host_cluster, shell_job
from support.waiting import eventually, process_alive

NAMESPACE = "steps"
# Kubernetes reads `$$` in a command as an escaped `$`: `$$$$` reaches sh as `$$`.
SHELL_PID = "$$$$"
GPU_LABEL = {"nvidia.com/gpu.present": "true"}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    nodes = [
        FakeNode("cpu-1"),
        FakeNode("gpu-1", labels=GPU_LABEL, taints=(GPU_TAINT,), gpus=2),
    ]
    with host_cluster(tmp_path, nodes) as running:
        yield running


@pytest.fixture
def api(cluster: FakeCluster) -> Iterator[client.ApiClient]:
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(cluster.kubeconfig), client_configuration=configuration
    )
    with client.ApiClient(configuration) as api_client:
        yield api_client


def test_failing_command_fails_the_job_with_its_exit_code_and_log(
    api: client.ApiClient,
) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    container = client.V1Container(
        name="main",
        image=HOST_IMAGE,
        command=["sh", "-c", "echo hello; echo oops >&2; exit 3"],
    )
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="fails", labels={"team": "a"}),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(restart_policy="Never", containers=[container])
            ),
        ),
    )

    batch.create_namespaced_job(NAMESPACE, job)

    finished = _wait_for_job(batch, "fails", "Failed")
    failed = _condition(finished, "Failed")
    assert failed.reason == "BackoffLimitExceeded"
    assert finished.status.failed == 1 and not finished.status.active
    (pod,) = core.list_namespaced_pod(NAMESPACE, label_selector="job-name=fails").items
    assert pod.status.phase == "Failed"
    assert pod.metadata.owner_references[0].name == "fails"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")
    assert terminated.started_at is not None and terminated.finished_at is not None
    # stdout and stderr are read apart, so only each stream keeps its order.
    assert sorted(_log(core, pod.metadata.name).splitlines()) == ["hello", "oops"]
    assert _log(core, pod.metadata.name, stream="Stderr") == "oops\n"


def test_successful_command_completes_the_job(api: client.ApiClient) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)

    batch.create_namespaced_job(NAMESPACE, _job("works", "echo done"))

    finished = _wait_for_job(batch, "works", "Complete")
    assert finished.status.succeeded == 1
    assert finished.status.completion_time is not None
    (pod,) = core.list_namespaced_pod(NAMESPACE, label_selector="job-name=works").items
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.reason == "Completed"


def test_failed_pods_are_retried_up_to_the_backoff_limit(
    api: client.ApiClient, cluster: FakeCluster
) -> None:
    batch = client.BatchV1Api(api)

    batch.create_namespaced_job(NAMESPACE, _job("retried", "exit 1", backoffLimit=1))

    finished = _wait_for_job(batch, "retried", "Failed")
    assert finished.status.failed == 2
    assert len(cluster.objects("Pod", NAMESPACE)) == 2


def test_pod_failure_policy_fails_the_job_without_retrying(
    api: client.ApiClient, cluster: FakeCluster
) -> None:
    batch = client.BatchV1Api(api)
    policy = {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}
        ]
    }
    job = _job("doomed", "exit 42", backoffLimit=3, podFailurePolicy=policy)

    batch.create_namespaced_job(NAMESPACE, job)

    finished = _wait_for_job(batch, "doomed", "Failed")
    assert _condition(finished, "Failed").reason == "PodFailurePolicy"
    assert len(cluster.objects("Pod", NAMESPACE)) == 1


def test_log_follow_streams_lines_while_the_process_runs(
    api: client.ApiClient, tmp_path: Path
) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    release = tmp_path / "release"
    script = f"echo first; while [ ! -e {release} ]; do sleep 0.02; done; echo second"
    batch.create_namespaced_job(NAMESPACE, _job("talks", script))
    pod = _wait_for_pod(core, "talks", lambda pod: pod.status.phase == "Running")

    lines = watch.Watch().stream(
        core.read_namespaced_pod_log, pod.metadata.name, NAMESPACE
    )

    assert next(lines) == "first"
    release.touch()
    assert list(lines) == ["second"]


def test_log_timestamps_prefix_each_line(api: client.ApiClient) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    batch.create_namespaced_job(NAMESPACE, _job("stamped", "echo a; echo b"))
    _wait_for_job(batch, "stamped", "Complete")
    (pod,) = core.list_namespaced_pod(NAMESPACE).items

    text = _log(core, pod.metadata.name, timestamps=True)

    stamps_and_lines = [line.split(" ", 1) for line in text.splitlines()]
    assert [line for _, line in stamps_and_lines] == ["a", "b"]
    assert all(stamp.endswith("Z") and "T" in stamp for stamp, _ in stamps_and_lines)


def test_watch_sees_added_modified_and_deleted(api: client.ApiClient) -> None:
    batch = client.BatchV1Api(api)
    start = batch.list_namespaced_job(NAMESPACE).metadata.resource_version
    batch.create_namespaced_job(NAMESPACE, _job("other", "true", labels={"x": "n"}))
    batch.create_namespaced_job(NAMESPACE, _job("watched", "true", labels={"x": "y"}))
    seen: list[tuple[str, str, int]] = []

    watcher = watch.Watch()
    for event in watcher.stream(
        batch.list_namespaced_job,
        NAMESPACE,
        label_selector="x=y",
        resource_version=start,
        timeout_seconds=20,
    ):
        job = event["object"]
        seen.append(
            (event["type"], job.metadata.name, int(job.metadata.resource_version))
        )
        if event["type"] == "MODIFIED" and _condition(job, "Complete") is not None:
            batch.delete_namespaced_job(
                "watched", NAMESPACE, propagation_policy="Background"
            )
        if event["type"] == "DELETED":
            watcher.stop()

    types = [event_type for event_type, _, _ in seen]
    assert types[0] == "ADDED" and "MODIFIED" in types and types[-1] == "DELETED"
    assert {name for _, name, _ in seen} == {"watched"}
    versions = [version for _, _, version in seen]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


def test_watch_from_a_forgotten_version_gets_gone(
    api: client.ApiClient, cluster: FakeCluster
) -> None:
    batch = client.BatchV1Api(api)
    watcher = watch.Watch()

    with pytest.raises(ApiException) as raised:
        for _ in watcher.stream(
            batch.list_namespaced_job,
            NAMESPACE,
            resource_version="-5",
            timeout_seconds=2,
        ):
            pass

    assert raised.value.status == 410


def test_active_deadline_kills_a_sleeping_pod(
    api: client.ApiClient, cluster: FakeCluster, tmp_path: Path
) -> None:
    batch = client.BatchV1Api(api)
    pid_file = tmp_path / "pid"
    job = _job("sleeper", _sleeper_script(pid_file), activeDeadlineSeconds=1)

    batch.create_namespaced_job(NAMESPACE, job)

    finished = _wait_for_job(batch, "sleeper", "Failed")
    assert _condition(finished, "Failed").reason == "DeadlineExceeded"
    assert finished.status.failed == 1
    # A Job is marked Failed only once its pods have ended and are gone.
    assert not process_alive(int(pid_file.read_text()))
    assert cluster.objects("Pod", NAMESPACE) == []


def test_deleting_a_running_job_kills_its_process_and_removes_its_pods(
    api: client.ApiClient, cluster: FakeCluster, tmp_path: Path
) -> None:
    batch = client.BatchV1Api(api)
    _, pid = _start_sleeper(api, "runner", tmp_path / "pid")

    batch.delete_namespaced_job("runner", NAMESPACE, propagation_policy="Background")

    assert eventually(lambda: not process_alive(pid))
    assert eventually(lambda: not cluster.objects("Pod", NAMESPACE))
    with pytest.raises(ApiException) as raised:
        batch.read_namespaced_job("runner", NAMESPACE)
    assert raised.value.status == 404
    assert json.loads(raised.value.body)["reason"] == "NotFound"


def test_deleting_a_job_without_a_policy_orphans_its_pod(
    api: client.ApiClient, cluster: FakeCluster, tmp_path: Path
) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    pod, pid = _start_sleeper(api, "parent", tmp_path / "pid")

    batch.delete_namespaced_job("parent", NAMESPACE)

    orphan = core.read_namespaced_pod(pod.metadata.name, NAMESPACE)
    assert orphan.metadata.owner_references is None
    assert orphan.status.phase == "Running"
    core.delete_namespaced_pod(pod.metadata.name, NAMESPACE)
    assert eventually(lambda: not process_alive(pid))
    assert eventually(lambda: not cluster.objects("Pod", NAMESPACE))


def test_gpu_pod_without_toleration_stays_unschedulable(api: client.ApiClient) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    job = _job("no-gpu-node", "true", gpus=1)

    batch.create_namespaced_job(NAMESPACE, job)

    pod = _wait_for_pod(core, "no-gpu-node", lambda pod: bool(pod.status.conditions))
    (scheduled,) = pod.status.conditions
    assert (scheduled.type, scheduled.status) == ("PodScheduled", "False")
    assert scheduled.reason == "Unschedulable"
    assert "untolerated taint" in scheduled.message
    assert pod.status.phase == "Pending" and pod.spec.node_name is None
    assert batch.read_namespaced_job("no-gpu-node", NAMESPACE).status.active == 1


def test_gpu_pod_with_toleration_runs_on_the_gpu_node_with_its_devices(
    api: client.ApiClient,
) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    job = _job(
        "gpu-step",
        'echo "devices=$NVIDIA_VISIBLE_DEVICES"',
        gpus=2,
        nodeSelector=GPU_LABEL,
        tolerations=[GPU_TOLERATION],
    )

    batch.create_namespaced_job(NAMESPACE, job)

    _wait_for_job(batch, "gpu-step", "Complete")
    (pod,) = core.list_namespaced_pod(NAMESPACE).items
    assert pod.spec.node_name == "gpu-1"
    assert _log(core, pod.metadata.name) == "devices=0,1\n"


def test_gpus_held_by_a_running_pod_keep_the_next_one_pending(
    api: client.ApiClient, tmp_path: Path
) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    release = tmp_path / "release"
    wait = f"while [ ! -e {release} ]; do sleep 0.02; done"
    on_gpus: dict[str, Any] = {
        "gpus": 2,
        "nodeSelector": GPU_LABEL,
        "tolerations": [GPU_TOLERATION],
    }
    batch.create_namespaced_job(NAMESPACE, _job("first", wait, **on_gpus))
    _wait_for_pod(core, "first", lambda pod: pod.status.phase == "Running")

    batch.create_namespaced_job(NAMESPACE, _job("second", "true", **on_gpus))

    pod = _wait_for_pod(core, "second", lambda pod: bool(pod.status.conditions))
    assert "Insufficient nvidia.com/gpu" in pod.status.conditions[0].message
    release.touch()
    _wait_for_job(batch, "second", "Complete")


def test_unknown_image_leaves_the_pod_waiting_on_its_pull(
    api: client.ApiClient,
) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    job = _job("unknown", "true", image="registry.invalid/nothing:1")

    batch.create_namespaced_job(NAMESPACE, job)

    pod = _wait_for_pod(
        core, "unknown", lambda pod: bool(pod.status.container_statuses)
    )
    waiting = pod.status.container_statuses[0].state.waiting
    assert waiting.reason == "ErrImagePull"
    assert "registry.invalid/nothing:1" in waiting.message
    assert pod.status.phase == "Pending"
    status = batch.read_namespaced_job("unknown", NAMESPACE).status
    assert not status.failed and status.conditions is None
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_pod_log(pod.metadata.name, NAMESPACE)
    assert raised.value.status == 400
    assert "is waiting to start: ErrImagePull" in raised.value.body


def test_env_field_refs_and_empty_dir_mounts_reach_the_command(
    api: client.ApiClient,
) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    job = _job("env", 'echo "$POD $NS $GREETING"; echo kept > "$1"; cat "$1"')
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    container["command"] += ["sh", "/scratch/out.txt"]
    container["env"] = [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "NAME", "value": "world"},
        {"name": "GREETING", "value": "hello-$(NAME)"},
    ]
    container["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
    pod_spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]

    batch.create_namespaced_job(NAMESPACE, job)

    _wait_for_job(batch, "env", "Complete")
    (pod,) = core.list_namespaced_pod(NAMESPACE).items
    expected = f"{pod.metadata.name} {NAMESPACE} hello-world\nkept\n"
    assert _log(core, pod.metadata.name) == expected


def test_init_containers_run_before_the_container_and_share_its_volumes(
    api: client.ApiClient,
) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    job = _job("staged", 'cat "$1"')
    pod_spec = job["spec"]["template"]["spec"]
    mounts = [{"name": "work", "mountPath": "/work"}]
    pod_spec["volumes"] = [{"name": "work", "emptyDir": {}}]
    pod_spec["containers"][0]["command"] += ["sh", "/work/in.txt"]
    pod_spec["containers"][0]["volumeMounts"] = mounts
    fetch = 'echo fetching; echo fetched > "$1"'
    pod_spec["initContainers"] = [
        {
            "name": "fetch",
            "image": HOST_IMAGE,
            "command": ["sh", "-c", fetch, "sh", "/work/in.txt"],
            "volumeMounts": mounts,
        }
    ]

    batch.create_namespaced_job(NAMESPACE, job)

    _wait_for_job(batch, "staged", "Complete")
    (pod,) = core.list_namespaced_pod(NAMESPACE).items
    assert pod.status.init_container_statuses[0].state.terminated.exit_code == 0
    assert _log(core, pod.metadata.name, container="fetch") == "fetching\n"
    assert _log(core, pod.metadata.name, container="main") == "fetched\n"


def test_termination_message_is_reported(api: client.ApiClient) -> None:
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    job = _job("digest", 'printf sha256:abc > "$1"')
    job["spec"]["template"]["spec"]["containers"][0]["command"] += [
        "sh",
        "/dev/termination-log",
    ]

    batch.create_namespaced_job(NAMESPACE, job)

    _wait_for_job(batch, "digest", "Complete")
    (pod,) = core.list_namespaced_pod(NAMESPACE).items
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.message == "sha256:abc"


def test_ttl_after_finished_removes_the_job_and_its_pods(
    api: client.ApiClient, cluster: FakeCluster
) -> None:
    batch = client.BatchV1Api(api)

    batch.create_namespaced_job(
        NAMESPACE, _job("short-lived", "true", ttlSecondsAfterFinished=0)
    )

    assert eventually(lambda: not cluster.objects("Job", NAMESPACE))
    assert eventually(lambda: not cluster.objects("Pod", NAMESPACE))
    assert [job["metadata"]["name"] for job in cluster.created("Job")] == [
        "short-lived"
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            lambda job: job["spec"]["template"]["spec"]["containers"][0].pop("image"),
            "image",
        ),
        (lambda job: job["spec"].update(retries=2), "retries"),
        (
            lambda job: job["spec"]["template"]["spec"].update(restartPolicy="Always"),
            "restartPolicy",
        ),
    ],
    ids=["container-without-image", "unknown-field", "restart-always"],
)
def test_invalid_job_is_refused_with_422(
    api: client.ApiClient, cluster: FakeCluster, change: Any, field: str
) -> None:
    job = _job("invalid", "true")
    change(job)

    with pytest.raises(ApiException) as raised:
        client.BatchV1Api(api).create_namespaced_job(NAMESPACE, job)

    assert raised.value.status == 422
    status = json.loads(raised.value.body)
    assert status["reason"] == "Invalid" and field in status["message"]
    assert cluster.created("Job") == [] and cluster.objects("Job", NAMESPACE) == []


def test_creating_a_job_twice_conflicts(api: client.ApiClient) -> None:
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(NAMESPACE, _job("twice", "true"))

    with pytest.raises(ApiException) as raised:
        batch.create_namespaced_job(NAMESPACE, _job("twice", "true"))

    assert raised.value.status == 409
    assert json.loads(raised.value.body)["reason"] == "AlreadyExists"


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["missing", "wrong"])
def test_requests_without_the_token_are_unauthorized(
    cluster: FakeCluster, token: str | None
) -> None:
    configuration = client.Configuration(host=cluster.url)
    if token is not None:
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}

    with client.ApiClient(configuration) as unauthenticated:
        with pytest.raises(ApiException) as raised:
            client.CoreV1Api(unauthenticated).list_node()

    assert raised.value.status == 401
    assert json.loads(raised.value.body)["reason"] == "Unauthorized"


def test_nodes_report_labels_taints_and_gpus(api: client.ApiClient) -> None:
    nodes = {
        node.metadata.name: node for node in client.CoreV1Api(api).list_node().items
    }

    gpu = nodes["gpu-1"]
    assert gpu.status.capacity["nvidia.com/gpu"] == "2"
    assert gpu.metadata.labels["nvidia.com/gpu.present"] == "true"
    assert gpu.spec.taints[0].key == "nvidia.com/gpu"
    assert "nvidia.com/gpu" not in nodes["cpu-1"].status.capacity


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/stepforge/run/in.json", "/host/run/in.json"),
        ("/stepforge/run", "/host/run"),
        ("/stepforge/code/x.py", "/host/code/x.py"),
        ("--digest-file=/dev/termination-log", "--digest-file=/host/term"),
        ("/stepforge/running", "/host/running"),
        ("/stepforge-other/x", "/stepforge-other/x"),
        ("relative/stepforge/run", "relative/stepforge/run"),
    ],
)
def test_rewrite_paths_replaces_the_longest_mounted_prefix(
    value: str, expected: str
) -> None:
    mapping = {
        "/stepforge": Path("/host"),
        "/stepforge/run": Path("/host/run"),
        "/stepforge/code/": Path("/host/code"),
        "/dev/termination-log": Path("/host/term"),
    }

    assert rewrite_paths(value, mapping) == expected


def test_store_refuses_to_resume_before_its_kept_history() -> None:
    store = ObjectStore(history_length=2)
    for index in range(4):
        store.create(_secret(f"s{index}"))

    with pytest.raises(ApiError) as raised:
        list(store.changes({"Secret"}, since=0, deadline=0.0))

    assert raised.value.code == 410


def test_follower_behind_the_kept_history_resyncs_and_goes_on() -> None:
    store = ObjectStore(history_length=2)
    for index in range(4):
        store.create(_secret(f"s{index}"))
    handled: list[str] = []
    resynced_at: list[int] = []

    def resync() -> None:
        resynced_at.append(store.revision)
        store.create(_secret("after"))

    follow_changes(
        store,
        {"Secret"},
        0,
        lambda change: handled.append(change.obj["metadata"]["name"]),
        resync,
        stop=lambda: bool(handled),
    )

    assert resynced_at == [4] and handled == ["after"]


def _job(
    name: str,
    script: str,
    *,
    image: str = HOST_IMAGE,
    labels: dict[str, str] | None = None,
    gpus: int = 0,
    nodeSelector: dict[str, str] | None = None,  # noqa: N803
    tolerations: list[dict[str, str]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A shell_job with Job `spec` fields, and pod spec fields to place it."""
    resources = {"resources": {"limits": {"nvidia.com/gpu": gpus}}} if gpus else {}
    job = shell_job(name, script, image=image, labels=labels, **resources)
    job["spec"].update(spec)
    pod_spec = job["spec"]["template"]["spec"]
    if nodeSelector:
        pod_spec["nodeSelector"] = nodeSelector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    return job


def _sleeper_script(pid_file: Path) -> str:
    """Writes the shell's pid to `pid_file`, then sleeps as that process."""
    return f"echo {SHELL_PID} > {pid_file}; exec sleep 60"


def _start_sleeper(api: client.ApiClient, name: str, pid_file: Path) -> tuple[Any, int]:
    """Runs Job `name` with _sleeper_script: its running pod and its pid."""
    client.BatchV1Api(api).create_namespaced_job(
        NAMESPACE, _job(name, _sleeper_script(pid_file))
    )
    core = client.CoreV1Api(api)
    pod = _wait_for_pod(core, name, lambda pod: pod.status.phase == "Running")
    assert eventually(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    return pod, int(pid_file.read_text())


def _wait_for_job(batch: client.BatchV1Api, name: str, condition: str) -> Any:
    found: list[Any] = []

    def finished() -> bool:
        job = batch.read_namespaced_job(name, NAMESPACE)
        found[:] = [job]
        return _condition(job, condition) is not None

    assert eventually(finished), f"job {name} never got condition {condition}"
    return found[0]


def _wait_for_pod(core: client.CoreV1Api, job: str, ready: Any) -> Any:
    found: list[Any] = []

    def matches() -> bool:
        pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"job-name={job}")
        found[:] = [pod for pod in pods.items if ready(pod)]
        return bool(found)

    assert eventually(matches), f"no pod of job {job} got there"
    return found[0]


def _condition(job: Any, type_: str) -> Any:
    for condition in job.status.conditions or []:
        if condition.type == type_ and condition.status == "True":
            return condition
    return None


def _log(core: client.CoreV1Api, pod: str, **options: Any) -> str:
    # Read raw: this client version turns a text body into the repr of bytes.
    response = core.read_namespaced_pod_log(
        pod, NAMESPACE, _preload_content=False, **options
    )
    return str(response.data.decode())


def _secret(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
    }
