"""What the build service does on start and over time: it finishes builds a
restart interrupted, and removes archives no step refers to."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from pathlib import Path

import grpc
from support.archives import MAIN as ENTRY
from support.archives import code_archive
from support.suite import running_suite

from stepforge.services.build.garbage import collect_unreferenced_archives
from stepforge.services.build.upload import archive_key
from stepforge.services.config import load_service_token
from stepforge.services.core.object_store import open_object_store
from stepforge.services.core.registry_client import RegistryClient
from stepforge.v1 import common_pb2, registry_pb2


def registry_client(url: str, data_dir: Path) -> tuple[RegistryClient, grpc.Channel]:
    channel = grpc.insecure_channel(url)
    return RegistryClient(channel, url, load_service_token(data_dir)), channel


def register_pending(client: RegistryClient, environment: str, name: str) -> None:
    step = common_pb2.Step(
        name=f"steps/{name}", function_path="main.py", function_name="main"
    )
    client.register_step(environment, step, [], common_pb2.STEP_ORIGIN_LOCAL)


def wait_until_built(client: RegistryClient, token: str, name: str) -> common_pb2.Step:
    for _ in range(400):
        step = client.get_step(token, f"steps/{name}")
        if step.status != common_pb2.STEP_STATUS_PENDING:
            return step
        time.sleep(0.025)
    raise AssertionError(f"step {name} is still pending")


def test_restart_resumes_a_build_whose_archive_was_stored(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    content = code_archive()
    sha256 = hashlib.sha256(content).hexdigest()
    with running_suite(data_dir) as first:
        client, channel = registry_client(first.url, data_dir)
        environment = client.authenticate(first.token).environment
        register_pending(client, environment, "stored")
        register_pending(client, environment, "unstored")
        source = tmp_path / "archive.tar.gz"
        source.write_bytes(content)
        open_object_store(first.object_store_url).put_file(archive_key(sha256), source)
        client.update_step_build(
            registry_pb2.UpdateStepBuildRequest(
                environment=environment,
                name="steps/stored",
                status=common_pb2.STEP_STATUS_PENDING,
                build_log="code archive stored",
                archive_sha256=sha256,
                archive_size_bytes=len(content),
            )
        )
        channel.close()

    with running_suite(data_dir) as second:
        client, channel = registry_client(second.url, data_dir)
        resumed = wait_until_built(client, second.token, "stored")
        interrupted = wait_until_built(client, second.token, "unstored")
        channel.close()

    assert resumed.status == common_pb2.STEP_STATUS_READY, resumed.build_log
    assert "build resumed after a restart" in resumed.build_log
    assert interrupted.status == common_pb2.STEP_STATUS_FAILED
    assert "interrupted by a restart" in interrupted.build_log


def test_unreferenced_archives_are_removed_after_the_grace_period(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "main.py").write_bytes(ENTRY)
    (folder / "other.py").write_bytes(ENTRY)
    with running_suite(data_dir) as suite:
        config = {"local_folder": str(folder)}
        suite.sdk.create_step(
            step_name="kept",
            function_path="main.py",
            function_name="main",
            container_config={**config, "included_folders": ["main.py"]},
        )
        suite.sdk.create_step(
            step_name="dropped",
            function_path="other.py",
            function_name="main",
            container_config={**config, "included_folders": ["other.py"]},
        )
        store = open_object_store(suite.object_store_url)
        assert len(list(store.list("archives/"))) == 2
        suite.sdk.delete_step("dropped")
        client, channel = registry_client(suite.url, data_dir)

        assert collect_unreferenced_archives(store, client, timedelta(hours=1)) == 0
        assert collect_unreferenced_archives(store, client, timedelta(0)) == 1
        channel.close()
        kept = suite.sdk.get_step("kept")

    remaining = [info.key for info in store.list("archives/")]
    assert kept is not None
    assert len(remaining) == 1
