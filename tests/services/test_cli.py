"""`stepforge up` and `stepforge serve`, run as processes the way users run them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import grpc
import pytest
from support.archives import create_step_requests
from support.suite import suite_process

from stepforge import Input, StepforgeSdk
from stepforge.errors import UnavailableError
from stepforge.services.core.tls import ensure_self_signed
from stepforge.services.suite import read_env_file
from stepforge.v1 import (
    build_pb2_grpc,
    common_pb2,
    registry_pb2,
    registry_pb2_grpc,
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def example_folder(root: Path) -> Path:
    folder = root / "code"
    folder.mkdir()
    (folder / "main.py").write_text("def main(x):\n    return {}\n")
    return folder


def test_up_serves_tls_and_writes_the_environment_privately(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()

    with suite_process(data_dir, port) as running:
        env_file = data_dir / "env"
        assert running.env["STEPFORGE_ENVIRONMENT_URL"] == f"grpcs://127.0.0.1:{port}"
        assert running.env["STEPFORGE_SDK_TOKEN"].startswith("sf_")
        assert running.env["STEPFORGE_ADMIN_TOKEN"].startswith("sf_")
        assert running.env["STEPFORGE_CA_CERT"] == str(data_dir / "tls" / "ca.pem")
        assert env_file.stat().st_mode & 0o777 == 0o600
        # Output that is not a terminal ends up in logs: no token in it.
        printed = "".join(running.output)
        assert (
            f"the environment's token is STEPFORGE_SDK_TOKEN in {env_file}" in printed
        )
        assert running.env["STEPFORGE_SDK_TOKEN"] not in printed
        assert running.env["STEPFORGE_ADMIN_TOKEN"] not in printed
        assert (data_dir / "service-token").stat().st_mode & 0o777 == 0o600
        assert (data_dir / "tls" / "server-key.pem").stat().st_mode & 0o777 == 0o600
        with running.sdk() as sdk:
            assert sdk.list_steps() == []
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plaintext:
            with pytest.raises(grpc.RpcError) as refused:
                registry_pb2_grpc.RegistryServiceStub(plaintext).ListSteps(
                    registry_pb2.ListStepsRequest(), timeout=5
                )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert running.stop() == 0


def test_up_serves_plaintext_only_when_asked(tmp_path: Path) -> None:
    with suite_process(tmp_path / "data", free_port(), "--plaintext") as running:
        assert not running.env["STEPFORGE_ENVIRONMENT_URL"].startswith("grpcs://")
        assert "STEPFORGE_CA_CERT" not in running.env
        with running.sdk() as sdk:
            assert sdk.list_steps() == []


def test_client_certificates_can_be_required(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with suite_process(data_dir, free_port(), "--require-client-certs") as running:
        with running.sdk() as without_certificate:
            with pytest.raises(UnavailableError):
                without_certificate.list_steps()
        with StepforgeSdk(
            running.env["STEPFORGE_ENVIRONMENT_URL"],
            running.env["STEPFORGE_SDK_TOKEN"],
            ca_cert=running.env["STEPFORGE_CA_CERT"],
            client_cert=running.env["STEPFORGE_CLIENT_CERT"],
            client_key=running.env["STEPFORGE_CLIENT_KEY"],
        ) as with_certificate:
            assert with_certificate.list_steps() == []


def test_restarting_up_keeps_steps_archives_and_settings(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    folder = example_folder(tmp_path)
    port = free_port()

    with suite_process(data_dir, port) as first:
        with first.sdk() as sdk:
            first.sdk(admin=True).update_project_settings(
                container_config={"system_dependencies": ["bash"]}
            )
            created = sdk.create_step(
                function_path="main.py",
                function_name="main",
                container_config={"local_folder": str(folder)},
                inputs=[Input(name="x", data_type="number")],
            )
        first.stop(signal.SIGKILL)

    with suite_process(data_dir, port) as second:
        assert second.env == first.env
        with second.sdk() as sdk:
            assert sdk.get_step("main") == created
            assert sdk.get_project_settings()["container_config"][
                "system_dependencies"
            ] == ["bash"]
            sdk.download_step_local_folder("main", str(tmp_path / "out"))
    with tarfile.open(tmp_path / "out" / "main.tgz") as tar:
        assert tar.getnames() == ["main.py"]


def test_services_run_apart_and_talk_through_grpc_over_tls(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    registry_port, build_port = free_port(), free_port()
    environment = {**os.environ, "STEPFORGE_SERVICE_TOKEN": "sfs_shared-for-this-test"}
    # One authority for both, as an operator would provide it.
    files = ensure_self_signed(tmp_path / "tls")
    tls = [
        "--tls-cert", str(files.server_cert),
        "--tls-key", str(files.server_key),
        "--tls-ca", str(files.ca_cert),
    ]  # fmt: skip
    credentials = grpc.ssl_channel_credentials(files.ca_cert.read_bytes())
    base = [sys.executable, "-m", "stepforge.services.cli", "serve"]
    registry = subprocess.Popen(
        [
            *base,
            "registry",
            "--data-dir",
            str(data_dir / "r"),
            "--port",
            str(registry_port),
            *tls,
        ],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    build = None
    try:
        assert registry.stdout is not None
        while not registry.stdout.readline().startswith("the project admin token"):
            assert registry.poll() is None, "the registry did not start"
        token = read_env_file(data_dir / "r" / "env")["STEPFORGE_SDK_TOKEN"]
        build = subprocess.Popen(
            [
                *base,
                "build",
                "--data-dir",
                str(data_dir / "b"),
                "--port",
                str(build_port),
                "--registry-url",
                f"127.0.0.1:{registry_port}",
                *tls,
            ],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert build.stdout is not None
        while "serving" not in build.stdout.readline():
            assert build.poll() is None, "the build service did not start"

        metadata = (("authorization", f"Bearer {token}"),)
        with grpc.secure_channel(f"127.0.0.1:{build_port}", credentials) as channel:
            step = build_pb2_grpc.BuildServiceStub(channel).CreateStep(
                iter(create_step_requests("apart")), metadata=metadata, timeout=30
            )
        assert step.status == common_pb2.STEP_STATUS_PENDING
        with grpc.secure_channel(f"127.0.0.1:{registry_port}", credentials) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            request = registry_pb2.GetStepRequest(name="steps/apart")
            for _ in range(200):
                stored = stub.GetStep(request, metadata=metadata, timeout=5)
                if stored.status != common_pb2.STEP_STATUS_PENDING:
                    break
                time.sleep(0.05)
        assert stored.status == common_pb2.STEP_STATUS_READY, stored.build_log
    finally:
        for process in (build, registry):
            if process is not None:
                process.terminate()
                process.wait(timeout=20)
                if process.stdout is not None:
                    process.stdout.close()


def test_data_dir_and_object_store_default_to_their_environment_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from stepforge.services import cli

    monkeypatch.setenv("STEPFORGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STEPFORGE_OBJECT_STORE", "s3://k:s@minio:9000/steps")

    parsed = cli._parser().parse_args(["serve", "build"])

    assert parsed.data_dir == str(tmp_path / "data")
    assert parsed.object_store == "s3://k:s@minio:9000/steps"
