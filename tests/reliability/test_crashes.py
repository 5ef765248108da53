"""`kill -9` of the suite at its worst moments loses nothing that completed and
leaves nothing half-done."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
from support.s3_server import free_port
from support.step_code import write_step_code
from support.suite import SuiteProcess, suite_process

from stepforge import Input, Output
from stepforge.services.build.garbage import collect_unreferenced_archives
from stepforge.services.config import load_service_token
from stepforge.services.core.object_store import LocalObjectStore
from stepforge.services.core.registry_client import RegistryClient
from stepforge.services.execution.garbage import collect_orphan_files
from stepforge.services.execution.store import ExecutionStore
from stepforge.v1 import build_pb2, build_pb2_grpc, common_pb2

MiB = 1024 * 1024


def _channel(suite: SuiteProcess) -> grpc.Channel:
    address = suite.env["STEPFORGE_ENVIRONMENT_URL"].removeprefix("grpcs://")
    ca = Path(suite.env["STEPFORGE_CA_CERT"]).read_bytes()
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(ca))


def _upload_that_stalls(
    sent: threading.Event, release: threading.Event
) -> Iterator[build_pb2.CreateStepRequest]:
    step = common_pb2.Step(
        name="steps/cut_short", function_path="main.py", function_name="main"
    )
    yield build_pb2.CreateStepRequest(
        header=build_pb2.CreateStepHeader(
            step=step, origin=common_pb2.STEP_ORIGIN_LOCAL
        )
    )
    yield build_pb2.CreateStepRequest(archive_chunk=b"\x1f\x8b" + b"\0" * (MiB - 2))
    sent.set()
    release.wait(30)


def test_a_crash_mid_upload_and_mid_run_leaves_nothing_behind(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    code = write_step_code(tmp_path / "code")

    with suite_process(data_dir, port) as first:
        with first.sdk() as sdk:
            sdk.create_step(
                function_path="steps.py",
                function_name="echo",
                container_config={"local_folder": str(code)},
                inputs=[Input("text", "string"), Input("count", "number")],
                outputs=[Output("echoed", "string")],
            )
            sdk.create_pipeline(pipeline_name="echo", step_name="echo")
            done = sdk.run_pipeline("echo", inputs={"text": "kept", "count": 1})
            sdk.create_step(
                step_name="sleepy",
                function_path="steps.py",
                function_name="sleeps",
                container_config={"local_folder": str(code)},
                inputs=[Input("seconds", "number"), Input("marker", "string")],
            )
            sdk.create_pipeline(pipeline_name="sleepy", step_name="sleepy")
            marker = tmp_path / "child.pid"
            running = sdk.run_pipeline(
                "sleepy", inputs={"seconds": 60, "marker": str(marker)}, wait=False
            )
            while not marker.exists():
                time.sleep(0.05)

            sent, release = threading.Event(), threading.Event()
            channel = _channel(first)
            upload = build_pb2_grpc.BuildServiceStub(channel).CreateStep.future(
                _upload_that_stalls(sent, release),
                metadata=(
                    ("authorization", f"Bearer {first.env['STEPFORGE_SDK_TOKEN']}"),
                ),
            )
            assert sent.wait(10)
            time.sleep(0.3)  # the chunk reaches the server
            assert not upload.done(), upload.exception()
            first.stop(signal.SIGKILL)
            release.set()
            channel.close()
            assert upload.exception(timeout=10) is not None

    with suite_process(data_dir, port) as second:
        with second.sdk() as sdk:
            interrupted = sdk.get_step("cut_short")
            kept = sdk.get_pipeline_execution(done["execution_id"])
            kept_output = sdk.get_pipeline_execution_output(
                done["execution_id"], "echoed"
            )
            stopped = sdk.get_pipeline_execution(running["execution_id"])
            ready = sdk.get_step("echo")

        # Everything stored is referenced, once the grace of the collectors is
        # waived: a crash left nothing behind.
        objects = LocalObjectStore(data_dir / "objects")
        address = second.env["STEPFORGE_ENVIRONMENT_URL"].removeprefix("grpcs://")
        with _channel(second) as channel:
            registry = RegistryClient(channel, address, load_service_token(data_dir))
            referenced = registry.referenced_archives()
            collect_unreferenced_archives(objects, registry, timedelta(0))
        executions = ExecutionStore(data_dir / "execution" / "executions.db")
        collect_orphan_files(objects, executions, timedelta(0))
        stored_archives = {
            info.key.rsplit("/", 1)[1].removesuffix(".tar.gz")
            for info in objects.list("archives/")
        }
        execution_files = {
            info.key.split("/")[1] for info in objects.list("executions/")
        }
        known_executions = {done["execution_id"], running["execution_id"]}
        executions.close()

    assert interrupted is not None
    assert interrupted["creation_info"]["status"] == "Failed"
    assert ready is not None and ready["creation_info"]["status"] == "Ready"
    assert kept["status"] == "Succeeded" and kept_output == "kept"
    assert stopped["status"] == "Failed"
    assert "interrupted by a restart" in stopped["failure_reason"]
    assert stored_archives == referenced
    assert execution_files <= known_executions
    assert list((data_dir / "build" / "uploads").glob("*")) == []
