"""The whole suite on the Kubernetes backends: create_step builds an image with
(fake) Kaniko, run_pipeline runs it as a Job, on the fake cluster, with the
files in a real S3 store that pods reach through presigned URLs only."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.fake_images import FakeImageRegistry, FakeKaniko, FakeStepImages
from support.fake_kube import FakeCluster, FakeNode, HostRuntime, running_fake_cluster
from support.s3_server import S3Endpoint
from support.suite import SuiteUnderTest, running_suite

from stepforge import ExecutionFailedError, Input, Output, StepforgeSdk
from stepforge.services.build import service as build_service
from stepforge.services.kubernetes.settings import (
    DEFAULT_FETCH_IMAGE,
    DEFAULT_KANIKO_IMAGE,
    KubernetesSettings,
)

REPOSITORY = "registry.local:5000/stepforge/steps"
NAMESPACE = "stepforge-e2e"
GPU_LANGUAGE = "python-cuda:3.11-12.4"
CPU_NODE = FakeNode("cpu-1")
GPU_NODE = FakeNode(
    "gpu-1",
    labels={"nvidia.com/gpu.present": "true"},
    taints=({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},),
    gpus=1,
)

# The product document's example.
ENTRY_FUNCTION = """\
def entryStep(dataX_input, dataY_input=None):
    return {"result_output": dataX_input}
"""

STEPS = """\
import os


def devices():
    print("visible:", os.environ.get("NVIDIA_VISIBLE_DEVICES"))
    return {"visible": os.environ.get("NVIDIA_VISIBLE_DEVICES")}


def shout(document, suffix):
    text = document.read().decode()
    print("shouting", len(text), "characters")
    return {"loud": (text.upper() + suffix).encode()}


def fails():
    raise ValueError("no such luck")
"""


@dataclass
class KubeSuite:
    suite: SuiteUnderTest
    cluster: FakeCluster

    @property
    def sdk(self) -> StepforgeSdk:
        return self.suite.sdk


@pytest.fixture
def kube(tmp_path: Path, s3_server: S3Endpoint) -> Iterator[KubeSuite]:
    registry = FakeImageRegistry(tmp_path / "registry")
    nodes = [CPU_NODE, GPU_NODE]
    with running_fake_cluster(tmp_path / "cluster", nodes) as cluster:
        cluster.register_image(DEFAULT_KANIKO_IMAGE.split(":")[0], FakeKaniko(registry))
        cluster.register_image(DEFAULT_FETCH_IMAGE.split(":")[0], HostRuntime())
        cluster.register_image(REPOSITORY, FakeStepImages(registry))
        settings = KubernetesSettings(
            image_repository=REPOSITORY,
            namespace=NAMESPACE,
            kubeconfig=cluster.kubeconfig,
        )
        with running_suite(
            tmp_path / "data",
            s3_server.url(f"stepforge-{uuid.uuid4().hex[:12]}"),
            build_backend="kubernetes",
            execution_backend="kubernetes",
            kubernetes=settings,
        ) as suite:
            yield KubeSuite(suite, cluster)


@pytest.fixture
def code(tmp_path: Path) -> Path:
    folder = tmp_path / "code"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "my_entry_function_step.py").write_text(ENTRY_FUNCTION)
    (folder / "steps.py").write_text(STEPS)
    (folder / "requirements.txt").write_text("")
    return folder


def _step(
    kube: KubeSuite,
    code: Path,
    name: str,
    function_path: str,
    inputs: list[Input],
    outputs: list[Output],
    language: str = "python:3.11-slim",
) -> dict[str, Any]:
    step = kube.sdk.create_step(
        step_name=name,
        function_path=function_path,
        function_name=name,
        container_config={"local_folder": str(code), "language": language},
        inputs=inputs,
        outputs=outputs,
    )
    kube.sdk.create_pipeline(pipeline_name=f"{name}-pipeline", step_name=name)
    return step


def _jobs(kube: KubeSuite, component: str) -> list[dict[str, Any]]:
    return [
        job
        for job in kube.cluster.created("Job")
        if job["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]


def test_the_documented_step_runs_as_a_job_on_a_cpu_node(
    kube: KubeSuite, code: Path
) -> None:
    step = _step(
        kube,
        code,
        "entryStep",
        "src/my_entry_function_step.py",
        [Input("dataX_input", "json"), Input("dataY_input", "number")],
        [Output("result_output", "json")],
    )
    assert step["creation_info"]["status"] == "Ready"

    result = kube.sdk.run_pipeline(
        "entryStep-pipeline", inputs={"dataX_input": {"rows": [1, 2]}}
    )

    assert result["outputs"] == {"result_output": {"rows": [1, 2]}}
    execution = kube.sdk.get_pipeline_execution(result["execution_id"])
    assert execution["status"] == "Succeeded"
    assert execution["gpu_devices"] == []
    (job,) = _jobs(kube, "execution")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        f"{REPOSITORY}:"
    )
    (pod,) = [
        pod
        for pod in kube.cluster.objects("Pod", NAMESPACE)
        if pod["metadata"]["name"].startswith(job["metadata"]["name"])
    ]
    assert pod["spec"]["nodeName"] == "cpu-1"


def test_file_inputs_and_outputs_travel_through_presigned_urls(
    kube: KubeSuite, code: Path, tmp_path: Path
) -> None:
    _step(
        kube,
        code,
        "shout",
        "steps.py",
        [Input("document", "file"), Input("suffix", "string")],
        [Output("loud", "file")],
    )

    result = kube.sdk.run_pipeline(
        "shout-pipeline",
        inputs={"document": io.BytesIO(b"hello cluster"), "suffix": "!"},
    )
    target = kube.sdk.get_pipeline_execution_output(
        result["execution_id"], "loud", tmp_path / "loud.txt"
    )

    assert Path(target).read_bytes() == b"HELLO CLUSTER!"
    logs = kube.sdk.get_pipeline_execution_logs(result["execution_id"])
    assert ("stdout", "shouting 13 characters") in {
        (line["stream"], line["message"]) for line in logs
    }
    # Pods hold no object-store credentials, only URLs.
    (job,) = _jobs(kube, "execution")
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "test-secret-key" not in str(env)


def test_a_gpu_step_runs_on_the_gpu_node_with_its_device(
    kube: KubeSuite, code: Path
) -> None:
    _step(
        kube,
        code,
        "devices",
        "steps.py",
        [],
        [Output("visible", "string")],
        language=GPU_LANGUAGE,
    )

    result = kube.sdk.run_pipeline("devices-pipeline")

    assert result["outputs"] == {"visible": "0"}
    execution = kube.sdk.get_pipeline_execution(result["execution_id"])
    assert execution["gpu_devices"] == ["nvidia.com/gpu@gpu-1"]
    (job,) = _jobs(kube, "execution")
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod_spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


def test_a_failing_step_fails_as_on_the_local_backend(
    kube: KubeSuite, code: Path
) -> None:
    _step(kube, code, "fails", "steps.py", [], [])

    with pytest.raises(ExecutionFailedError) as raised:
        kube.sdk.run_pipeline("fails-pipeline")

    assert "ValueError: no such luck" in str(raised.value)


def test_every_language_is_available_because_images_bring_their_python(
    kube: KubeSuite, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on a build host with no Python of its own to offer.
    monkeypatch.setattr(build_service, "find_python", lambda version: None)

    languages = kube.sdk.list_languages()

    assert {item["name"] for item in languages} >= {"python:3.8-slim", GPU_LANGUAGE}
    assert all(item["interpreter_available"] for item in languages)
