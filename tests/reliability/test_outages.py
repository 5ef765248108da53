"""A store or a peer that goes down: callers are told what is down, nothing is
half-written, and the suite recovers by itself once it is back."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import pytest
from minio import Minio
from support.archives import create_step_requests
from support.s3_server import free_port, running_s3_server
from support.step_code import write_step_code
from support.suite import running_suite

from stepforge import Input
from stepforge.errors import UnavailableError
from stepforge.services.core.tls import ensure_self_signed
from stepforge.services.suite import read_env_file
from stepforge.v1 import build_pb2_grpc, common_pb2


def test_an_object_store_outage_is_unavailable_and_passes(tmp_path: Path) -> None:
    code = write_step_code(tmp_path / "code")
    port = free_port()
    with running_s3_server(port) as s3:
        url = s3.url("stepforge-outage")
        with running_suite(tmp_path / "data", url) as suite:

            def create(name: str) -> dict[str, object]:
                return suite.sdk.create_step(
                    step_name=name,
                    function_path="steps.py",
                    function_name="echo",
                    container_config={"local_folder": str(code)},
                    inputs=[Input("text", "string")],
                )

            create("before")
            s3_endpoint = s3

    # The suite outlives the store: start it again without the store.
    with running_suite(tmp_path / "data", url) as suite:
        with pytest.raises(UnavailableError) as raised:
            suite.sdk.create_step(
                step_name="during",
                function_path="steps.py",
                function_name="echo",
                container_config={"local_folder": str(code)},
                inputs=[Input("text", "string")],
            )
        assert f"127.0.0.1:{port}" in str(raised.value)
        assert "object store" in str(raised.value)
        assert suite.sdk.get_step("during") is None

        with running_s3_server(port):
            # A real MinIO keeps its buckets; moto starts empty, so the test
            # puts back what the store held before.
            client = Minio(
                s3_endpoint.endpoint,
                access_key=s3_endpoint.access_key,
                secret_key=s3_endpoint.secret_key,
                secure=False,
            )
            client.make_bucket("stepforge-outage")
            after = suite.sdk.create_step(
                step_name="after",
                function_path="steps.py",
                function_name="echo",
                container_config={"local_folder": str(code)},
                inputs=[Input("text", "string")],
            )
        assert after["creation_info"]["status"] == "Ready"  # type: ignore[index]


def test_a_registry_outage_is_unavailable_and_passes(tmp_path: Path) -> None:
    files = ensure_self_signed(tmp_path / "tls")
    tls = [
        "--tls-cert", str(files.server_cert),
        "--tls-key", str(files.server_key),
        "--tls-ca", str(files.ca_cert),
    ]  # fmt: skip
    environment = {**os.environ, "STEPFORGE_SERVICE_TOKEN": "sfs_shared-for-this-test"}
    registry_port, build_port = free_port(), free_port()
    serve = [sys.executable, "-m", "stepforge.services.cli", "serve"]
    registry_command = [
        *serve, "registry", "--data-dir", str(tmp_path / "r"),
        "--port", str(registry_port), *tls,
    ]  # fmt: skip
    build_command = [
        *serve, "build", "--data-dir", str(tmp_path / "b"), "--port", str(build_port),
        "--registry-url", f"127.0.0.1:{registry_port}", *tls,
    ]  # fmt: skip
    credentials = grpc.ssl_channel_credentials(files.ca_cert.read_bytes())
    registry = _start(registry_command, environment, "the project admin token")
    build = _start(build_command, environment, "serving")
    try:
        token = read_env_file(tmp_path / "r" / "env")["STEPFORGE_SDK_TOKEN"]
        metadata = (("authorization", f"Bearer {token}"),)
        with grpc.secure_channel(f"127.0.0.1:{build_port}", credentials) as channel:
            stub = build_pb2_grpc.BuildServiceStub(channel)
            stub.CreateStep(
                iter(create_step_requests("first")), metadata=metadata, timeout=30
            )

            _stop(registry)
            with pytest.raises(grpc.RpcError) as raised:
                stub.CreateStep(
                    iter(create_step_requests("second")), metadata=metadata, timeout=30
                )
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert f"registry at 127.0.0.1:{registry_port}" in raised.value.details()

            registry = _start(registry_command, environment, "the project admin token")
            created = _eventually_created(stub, metadata)
            assert created.status == common_pb2.STEP_STATUS_PENDING
    finally:
        for process in (build, registry):
            _stop(process)


def _eventually_created(
    stub: build_pb2_grpc.BuildServiceStub, metadata: tuple[tuple[str, str], ...]
) -> common_pb2.Step:
    """The build service, never restarted, serves again once the registry is."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return stub.CreateStep(
                iter(create_step_requests("second")), metadata=metadata, timeout=30
            )
        except grpc.RpcError as error:
            if (
                error.code() != grpc.StatusCode.UNAVAILABLE
                or time.monotonic() > deadline
            ):
                raise
        time.sleep(0.2)


def _start(
    command: list[str], environment: dict[str, str], ready: str
) -> subprocess.Popen[bytes]:
    """Starts a service with its output in a file: a pipe nobody reads would
    fill up with the errors an outage logs and stop the service."""
    log = tempfile.NamedTemporaryFile(prefix="stepforge-", suffix=".log", delete=False)
    process = subprocess.Popen(command, env=environment, stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if ready in Path(log.name).read_text(errors="replace"):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=10)
    raise AssertionError(f"{command[4]} did not start: {Path(log.name).read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
