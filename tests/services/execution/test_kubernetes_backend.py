"""The Kubernetes execution backend against the fake cluster: real Jobs, real
pods running pod_entry.py and the runner as local processes, and files
through presigned URLs of a real S3 server."""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from support.fake_kube import (
    FakeCluster,
    FakeNode,
    LocalCommand,
    rewrite_paths,
    running_fake_cluster,
)
from support.waiting import eventually

from stepforge.services.core.object_store import S3ObjectStore
from stepforge.services.core.registry_client import RegistryClient
from stepforge.services.execution import pod_entry, runner
from stepforge.services.execution.kubernetes_backend import (
    KubernetesBackend,
    KubernetesBackendSettings,
)
from stepforge.services.execution.lifecycle import Lifecycle
from stepforge.services.execution.logs import LogBook
from stepforge.services.execution.object_keys import input_key, output_key
from stepforge.services.execution.pod_spec import result_key
from stepforge.services.execution.store import ExecutionStore, StoredExecution
from stepforge.services.kubernetes import labels
from stepforge.services.kubernetes.client import api_client
from stepforge.services.kubernetes.settings import KubernetesSettings
from stepforge.v1 import common_pb2, execution_pb2

IMAGE = "registry.test/steps:fixture"
NAMESPACE = "steps-under-test"
GPU_LANGUAGE = "python-cuda:3.11-12.4"
PENDING_TIMEOUT_S = 2.0
FAST_TRANSFERS = {"timeout_s": 5.0, "attempts": 2, "backoff_s": 0.05}

SUCCEEDED = execution_pb2.EXECUTION_STATUS_SUCCEEDED
FAILED = execution_pb2.EXECUTION_STATUS_FAILED
CANCELLED = execution_pb2.EXECUTION_STATUS_CANCELLED
RUNNING = execution_pb2.EXECUTION_STATUS_RUNNING
PENDING = execution_pb2.EXECUTION_STATUS_PENDING
STDOUT = execution_pb2.LOG_STREAM_STDOUT
SYSTEM = execution_pb2.LOG_STREAM_SYSTEM

STEP_CODE = """\
import os
import signal
import sys
import time


def scale(data, factor):
    content = data.read()
    print("read", len(content), "bytes")
    print("to stderr", file=sys.stderr)
    return {"scaled": content * factor, "size": len(content)}


def fails(data, factor):
    raise RuntimeError("boom")


def sleeps(data, factor):
    with open(data.read().decode(), "w") as marker:
        marker.write(str(os.getpid()))
    print("sleeping", flush=True)
    time.sleep(120)
    return {}


def killed(data, factor):
    os.kill(os.getpid(), signal.SIGKILL)


def chatty(data, factor):
    for index in range(factor):
        print("line", index, "x" * 100)
    return {"size": factor}


def waits(data, factor):
    release = data.read().decode()
    for index in range(factor):
        print("before", index, flush=True)
    while not os.path.exists(release):
        time.sleep(0.05)
    for index in range(factor):
        print("after", index, flush=True)
    return {"size": factor}


def gpus(data, factor):
    return {"size": len(os.environ.get("NVIDIA_VISIBLE_DEVICES", ""))}
"""


class LocalStepImage:
    """The image `IMAGE`: /stepforge/{pod_entry.py,runner.py,code} in a host
    folder, `python` the tests' own interpreter."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def command(
        self,
        image: str,
        container: Mapping[str, Any],
        mounts: Mapping[str, Path],
        scratch: Path,
    ) -> LocalCommand:
        paths = {"/stepforge": self.root, **mounts}
        command: list[str] = [*container["command"], *container.get("args", [])]
        program, *arguments = command
        argv = [sys.executable if program == "python" else program]
        argv += [rewrite_paths(argument, paths) for argument in arguments]
        env = {"PATH": os.environ.get("PATH", os.defpath)}
        for item in container.get("env", []):
            env[item["name"]] = rewrite_paths(item["value"], paths)
        working_dir = rewrite_paths(container.get("workingDir", "/"), paths)
        return LocalCommand(argv=argv, env=env, cwd=Path(working_dir))


class _Registry:
    def release_pipeline_run(self, environment: str, name: str) -> None:
        return None


@dataclass
class Harness:
    cluster: FakeCluster
    objects: S3ObjectStore
    data_dir: Path
    settings: KubernetesBackendSettings
    store: ExecutionStore
    logs: LogBook
    lifecycle: Lifecycle
    backend: KubernetesBackend

    def execution(
        self,
        function: str,
        data: bytes = b"",
        factor: int = 2,
        language: str = "python:3.11-slim",
        timeout_s: float = 60,
        runtime_id: str = IMAGE,
        output_bytes: int = 0,
    ) -> StoredExecution:
        """A pending execution of `function`, stored with its file input."""
        step = common_pb2.Step(
            name=f"steps/{function}",
            function_path="steps.py",
            function_name=function,
            runtime_id=runtime_id,
            inputs=[
                common_pb2.StepInput(name="data", data_type=common_pb2.DATA_TYPE_FILE),
                common_pb2.StepInput(
                    name="factor", data_type=common_pb2.DATA_TYPE_NUMBER
                ),
            ],
            outputs=[
                common_pb2.StepOutput(
                    name="scaled", data_type=common_pb2.DATA_TYPE_FILE
                ),
                common_pb2.StepOutput(
                    name="size", data_type=common_pb2.DATA_TYPE_NUMBER
                ),
            ],
        )
        step.container_config.language = language
        name = f"executions/{uuid.uuid4().hex}"
        execution = execution_pb2.Execution(
            name=name, pipeline=f"pipelines/{function}", step=step.name, status=PENDING
        )
        execution.timeout.FromTimedelta(timedelta(seconds=timeout_s))
        execution.limits.output_bytes = output_bytes
        execution.inputs["factor"].json = json.dumps(factor)
        self.objects.put_stream(input_key(name, "data"), [data])
        execution.inputs["data"].file.size_bytes = len(data)
        self.store.insert("env-test", execution, step)
        return StoredExecution("env-test", execution, step)

    def submit(self, *args: Any, **kwargs: Any) -> str:
        run = self.execution(*args, **kwargs)
        self.backend.submit(run)
        return run.execution.name

    def wait(self, name: str, timeout_s: float = 30) -> execution_pb2.Execution:
        assert eventually(
            lambda: self.status(name) not in (PENDING, RUNNING), timeout_s
        )
        self.logs.flush()
        return self.get(name)

    def get(self, name: str) -> execution_pb2.Execution:
        stored = self.store.get(name)
        assert stored is not None
        return stored.execution

    def status(self, name: str) -> int:
        return self.get(name).status

    def lines(self, name: str, stream: int | None = None) -> list[str]:
        self.logs.flush()
        return [
            line.text
            for line in self.store.lines(name, 0, 10_000)
            if stream is None or line.stream == stream
        ]

    def jobs(self) -> list[dict[str, Any]]:
        return self.cluster.objects("Job", NAMESPACE)

    def restart(self) -> None:
        """Stops the backend as the service stops, and starts a new one that
        recovers what is active, as the service's next start does."""
        self.backend.shutdown()
        self.logs.stop()
        self.logs = LogBook(self.store)
        self.lifecycle = Lifecycle(
            self.store, self.logs, cast(RegistryClient, _Registry())
        )
        self.backend = _backend(
            self.settings, self.lifecycle, self.logs, self.store, self.objects
        )
        self.backend.recover(self.store.active())

    def close(self) -> None:
        self.backend.shutdown()
        self.logs.stop()
        self.store.close()


def _backend(
    settings: KubernetesBackendSettings,
    lifecycle: Lifecycle,
    logs: LogBook,
    store: ExecutionStore,
    objects: S3ObjectStore,
) -> KubernetesBackend:
    return KubernetesBackend(
        settings, api_client(settings.cluster), lifecycle, logs, store, objects
    )


@pytest.fixture
def image(tmp_path: Path) -> Path:
    root = tmp_path / "image"
    (root / "code").mkdir(parents=True)
    shutil.copy(pod_entry.__file__, root / "pod_entry.py")
    shutil.copy(runner.__file__, root / "runner.py")
    (root / "code" / "steps.py").write_text(STEP_CODE)
    return root


@pytest.fixture
def objects(s3_store: S3ObjectStore) -> S3ObjectStore:
    return s3_store


GPU_NODE = FakeNode(
    "gpu-1",
    labels={"nvidia.com/gpu.present": "true"},
    taints=({"key": "nvidia.com/gpu", "effect": "NoSchedule"},),
    gpus=2,
)


@pytest.fixture
def harness(tmp_path: Path, image: Path, objects: S3ObjectStore) -> Iterator[Harness]:
    with _harness(tmp_path, image, objects) as harness:
        yield harness


@pytest.fixture
def gpu_harness(
    tmp_path: Path, image: Path, objects: S3ObjectStore
) -> Iterator[Harness]:
    nodes = [FakeNode("cpu-1"), GPU_NODE]
    with _harness(tmp_path, image, objects, nodes) as harness:
        yield harness


@contextmanager
def _harness(
    tmp_path: Path,
    image: Path,
    objects: S3ObjectStore,
    nodes: list[FakeNode] | None = None,
) -> Iterator[Harness]:
    with running_fake_cluster(tmp_path / "cluster", nodes) as cluster:
        cluster.register_image("registry.test/steps", LocalStepImage(image))
        settings = KubernetesBackendSettings(
            KubernetesSettings(
                image_repository="registry.test/steps",
                namespace=NAMESPACE,
                kubeconfig=cluster.kubeconfig,
            ),
            pending_timeout_s=PENDING_TIMEOUT_S,
            transfer=FAST_TRANSFERS,
            poll_s=0.1,
        )
        store = ExecutionStore(tmp_path / "executions.db")
        logs = LogBook(store)
        lifecycle = Lifecycle(store, logs, cast(RegistryClient, _Registry()))
        backend = _backend(settings, lifecycle, logs, store, objects)
        harness = Harness(
            cluster, objects, tmp_path, settings, store, logs, lifecycle, backend
        )
        try:
            yield harness
        finally:
            harness.close()


def _output(objects: S3ObjectStore, name: str, output: str) -> bytes:
    return b"".join(objects.iter_chunks(output_key(name, output)))


def test_a_step_runs_in_a_job_and_its_outputs_and_logs_come_back(
    harness: Harness,
) -> None:
    name = harness.submit("scale", data=b"abc", factor=3)

    execution = harness.wait(name)

    assert execution.status == SUCCEEDED, execution.failure_reason
    assert json.loads(execution.outputs["size"].json) == 3
    assert execution.outputs["scaled"].file.size_bytes == 9
    assert _output(harness.objects, name, "scaled") == b"abcabcabc"
    assert execution.start_time.seconds > 0
    stdout = harness.lines(name, STDOUT)
    assert "read 3 bytes" in stdout and "to stderr" in stdout
    system = harness.lines(name, SYSTEM)
    assert system[-1] == "execution succeeded"
    assert any(line.startswith("running steps/scale in pod ") for line in system)
    # What only the pod needed goes once the execution has ended; the
    # outputs stay.
    assert eventually(lambda: not harness.objects.exists(result_key(name)))


def test_the_job_is_labelled_for_its_execution(harness: Harness) -> None:
    name = harness.submit("scale", data=b"a")
    harness.wait(name)

    (job,) = harness.cluster.created("Job")
    assert job["metadata"]["namespace"] == NAMESPACE
    assert job["metadata"]["labels"][labels.EXECUTION] == name.split("/")[1]
    assert job["metadata"]["labels"][labels.COMPONENT] == "execution"
    assert job["metadata"]["labels"][labels.PIPELINE] == "scale"


def test_a_failing_step_fails_with_the_local_backends_reason(
    harness: Harness,
) -> None:
    name = harness.submit("fails")

    execution = harness.wait(name)

    assert execution.status == FAILED
    assert execution.failure_reason == "RuntimeError: boom"
    assert "Traceback (most recent call last):" in harness.lines(name, STDOUT)


def test_a_killed_step_process_is_reported_as_killed(harness: Harness) -> None:
    name = harness.submit("killed")

    execution = harness.wait(name)

    assert execution.failure_reason == (
        "the step's process was killed by SIGKILL before it reported a result"
    )


def test_a_step_past_its_timeout_is_stopped_and_times_out(
    harness: Harness, tmp_path: Path
) -> None:
    marker = tmp_path / "pid"
    name = harness.submit("sleeps", data=str(marker).encode(), timeout_s=2)

    execution = harness.wait(name)

    assert execution.status == FAILED
    assert execution.failure_reason == "timed out after 2 s"
    assert eventually(lambda: not _alive(int(marker.read_text())))


def test_cancel_deletes_the_job_and_kills_the_pod_process(
    harness: Harness, tmp_path: Path
) -> None:
    marker = tmp_path / "pid"
    name = harness.submit("sleeps", data=str(marker).encode())
    assert eventually(marker.exists)
    assert eventually(lambda: "sleeping" in harness.lines(name, STDOUT))

    assert harness.backend.cancel(name)
    execution = harness.wait(name)

    assert execution.status == CANCELLED
    assert execution.failure_reason == "cancelled while running"
    assert eventually(lambda: not _alive(int(marker.read_text())))
    assert harness.jobs() == []


def test_cancel_of_an_execution_it_does_not_run_says_so(harness: Harness) -> None:
    assert harness.backend.cancel("executions/unknown") is False


def test_an_unschedulable_gpu_step_says_why_and_fails_after_the_timeout(
    harness: Harness,
) -> None:
    name = harness.submit("gpus", language=GPU_LANGUAGE)

    execution = harness.wait(name)

    assert execution.status == FAILED
    assert execution.failure_reason.startswith(
        f"the pod did not start within {PENDING_TIMEOUT_S:g} s: Unschedulable: "
    )
    assert any(
        line.startswith("waiting for the pod to start: Unschedulable")
        for line in harness.lines(name, SYSTEM)
    )
    assert harness.jobs() == []


def test_a_gpu_step_runs_on_a_gpu_node_with_its_device(
    gpu_harness: Harness,
) -> None:
    name = gpu_harness.submit("gpus", language=GPU_LANGUAGE)

    execution = gpu_harness.wait(name)

    assert execution.status == SUCCEEDED, execution.failure_reason
    # The step saw the device the device plugin gave it, such as "0".
    assert json.loads(execution.outputs["size"].json) >= 1
    assert list(execution.gpu_devices) == ["nvidia.com/gpu@gpu-1"]
    (pod,) = gpu_harness.cluster.objects("Pod", NAMESPACE)
    assert pod["spec"]["nodeName"] == "gpu-1"


def test_a_cpu_step_does_not_ask_for_the_gpu_node(gpu_harness: Harness) -> None:
    name = gpu_harness.submit("gpus")

    execution = gpu_harness.wait(name)

    assert json.loads(execution.outputs["size"].json) == 0
    assert list(execution.gpu_devices) == []
    (pod,) = gpu_harness.cluster.objects("Pod", NAMESPACE)
    assert pod["spec"]["nodeName"] == "cpu-1"


def test_an_image_that_cannot_be_pulled_says_why_and_fails(
    harness: Harness,
) -> None:
    name = harness.submit("scale", runtime_id="registry.test/other:missing")

    execution = harness.wait(name)

    assert execution.status == FAILED
    assert execution.failure_reason.startswith(
        f"the pod did not start within {PENDING_TIMEOUT_S:g} s: "
    )
    assert "ImagePull" in execution.failure_reason
    assert any(
        line.startswith("waiting for the pod to start: ErrImagePull")
        or line.startswith("waiting for the pod to start: ImagePullBackOff")
        for line in harness.lines(name, SYSTEM)
    )


def test_a_step_over_its_output_limit_is_stopped(harness: Harness) -> None:
    name = harness.submit("chatty", factor=200, output_bytes=4096)

    execution = harness.wait(name)

    assert execution.failure_reason == (
        "the step wrote more than its output limit of 4096 bytes"
    )
    assert sum(len(line) + 1 for line in harness.lines(name, STDOUT)) <= 4096


def test_a_step_built_by_the_local_backend_fails_with_the_way_out(
    harness: Harness,
) -> None:
    name = harness.submit("scale", runtime_id="0" * 64)

    execution = harness.wait(name)

    assert execution.status == FAILED
    assert "create the step again with the kubernetes build backend" in (
        execution.failure_reason
    )
    assert harness.cluster.created("Job") == []


def test_a_running_job_is_adopted_after_a_restart_without_repeating_lines(
    harness: Harness, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    name = harness.submit("waits", data=str(release).encode(), factor=3)
    assert eventually(lambda: harness.status(name) == RUNNING)
    assert eventually(lambda: len(harness.lines(name, STDOUT)) == 3)

    harness.restart()
    assert len(harness.jobs()) == 1
    release.touch()
    execution = harness.wait(name)

    assert execution.status == SUCCEEDED, execution.failure_reason
    assert harness.lines(name, STDOUT) == [
        "before 0",
        "before 1",
        "before 2",
        "after 0",
        "after 1",
        "after 2",
    ]


def test_a_job_that_ended_while_the_service_was_stopped_is_concluded(
    harness: Harness, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    name = harness.submit("waits", data=str(release).encode(), factor=1)
    assert eventually(lambda: harness.lines(name, STDOUT) == ["before 0"])
    harness.backend.shutdown()
    release.touch()
    assert eventually(lambda: _job_ended(harness))

    harness.restart()
    execution = harness.wait(name)

    assert execution.status == SUCCEEDED, execution.failure_reason
    assert harness.lines(name, STDOUT) == ["before 0", "after 0"]


def test_a_pending_execution_without_a_job_is_submitted_on_recovery(
    harness: Harness,
) -> None:
    name = harness.execution("scale", data=b"xy").execution.name

    harness.restart()
    execution = harness.wait(name)

    assert execution.status == SUCCEEDED, execution.failure_reason
    assert _output(harness.objects, name, "scaled") == b"xyxy"


def test_a_running_execution_whose_job_is_gone_fails_on_recovery(
    harness: Harness,
) -> None:
    name = harness.execution("scale").execution.name
    assert harness.lifecycle.mark_running(name, [])

    harness.restart()
    execution = harness.wait(name)

    assert execution.status == FAILED
    assert execution.failure_reason == (
        f"its Job {NAMESPACE}/stepforge-run-{name.split('/')[1]} is gone: it was "
        "deleted while the execution service was stopped"
    )


def test_shutdown_leaves_the_jobs_running(harness: Harness, tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    name = harness.submit("sleeps", data=str(marker).encode())
    assert eventually(marker.exists)

    harness.backend.shutdown()

    assert harness.status(name) == RUNNING
    assert len(harness.jobs()) == 1
    assert _alive(int(marker.read_text()))


def _job_ended(harness: Harness) -> bool:
    (job,) = harness.jobs()
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A process that ended but was not waited for yet is no longer running.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
