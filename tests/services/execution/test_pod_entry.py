"""pod_entry.py as a pod runs it: inputs fetched and outputs stored through
presigned URLs of a real S3 server, the runner in between."""

from __future__ import annotations

import glob
import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from support.waiting import eventually

from stepforge.services.core.object_store import S3ObjectStore
from stepforge.services.execution import pod_entry, runner
from stepforge.services.execution.object_keys import input_key, output_key
from stepforge.services.execution.pod_spec import (
    build_pod_spec,
    encode_pod_spec,
    result_key,
)
from stepforge.services.execution.store import StoredExecution
from stepforge.v1 import common_pb2, execution_pb2

EXECUTION = f"executions/{uuid.uuid4().hex}"
FAST_TRANSFERS = {"timeout_s": 5.0, "attempts": 3, "backoff_s": 0.05}
FILE = common_pb2.DATA_TYPE_FILE
STRING = common_pb2.DATA_TYPE_STRING
NUMBER = common_pb2.DATA_TYPE_NUMBER
ARRAY = common_pb2.DATA_TYPE_ARRAY
_PYTHON_38 = sorted(glob.glob("/root/.pyenv/versions/3.8.*/bin/python3.8"))

STEP_CODE = """\
import os
import time


def double(data, factor):
    content = data.read()
    return {"twice": content * int(factor), "size": len(content)}


def fails(data, factor):
    raise RuntimeError("it went wrong")


def passthrough(data, factor):
    return {"twice": data.name, "size": 0}


def sees(data, factor):
    return {"twice": b"", "size": len([k for k in os.environ if "POD_SPEC" in k])}


def waits(data, factor):
    with open(data.read().decode(), "w") as marker:
        marker.write("started")
    time.sleep(60)
    return {}


def echoes(data, factor, more=None):
    return {"twice": data.read() + factor.encode(), "size": len(factor)}
"""


@dataclass
class Pod:
    """A step image on the host, a run folder, and what the pod's run left."""

    image: Path
    run_dir: Path
    termination_log: Path
    python: str
    returncode: int | None = None
    stderr: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def environment(self, spec: dict[str, Any] | None) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "STEPFORGE_RUN_DIR": str(self.run_dir),
            "STEPFORGE_TERMINATION_LOG": str(self.termination_log),
            "HOME": str(self.run_dir / "home"),
        }
        if spec is not None:
            env["STEPFORGE_POD_SPEC"] = encode_pod_spec(spec)
        return env

    def command(self) -> list[str]:
        return [self.python, "-u", str(self.image / "pod_entry.py")]

    def run(self, spec: dict[str, Any] | None) -> int:
        completed = subprocess.run(
            self.command(),
            cwd=self.image / "code",
            env=self.environment(spec),
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.returncode, self.stderr = completed.returncode, completed.stderr
        return completed.returncode

    @property
    def message(self) -> str:
        if not self.termination_log.exists():
            return ""
        return self.termination_log.read_text()


@pytest.fixture(params=["host", "python3.8"])
def pod(request: pytest.FixtureRequest, tmp_path: Path) -> Pod:
    python = sys.executable
    if request.param == "python3.8":
        if not _PYTHON_38:
            pytest.skip("pyenv has no Python 3.8 here")
        python = _PYTHON_38[-1]
    return _pod(tmp_path, python)


@pytest.fixture
def host_pod(tmp_path: Path) -> Pod:
    return _pod(tmp_path, sys.executable)


def _pod(tmp_path: Path, python: str) -> Pod:
    image = tmp_path / "image"
    (image / "code").mkdir(parents=True)
    shutil.copy(pod_entry.__file__, image / "pod_entry.py")
    shutil.copy(runner.__file__, image / "runner.py")
    (image / "code" / "steps.py").write_text(STEP_CODE)
    return Pod(image, tmp_path / "run", tmp_path / "termination-log", python)


@pytest.fixture
def store(s3_store: S3ObjectStore) -> S3ObjectStore:
    return s3_store


def _run(
    function: str,
    *,
    data_default: bytes | None = None,
    output_default: bytes | None = None,
    factor: str = "2",
    with_data: bool = True,
) -> StoredExecution:
    data = common_pb2.StepInput(name="data", data_type=FILE)
    if data_default is not None:
        data.default_file_content = data_default
    twice = common_pb2.StepOutput(name="twice", data_type=FILE)
    if output_default is not None:
        twice.default_file_content = output_default
    step = common_pb2.Step(
        name="steps/demo",
        function_path="steps.py",
        function_name=function,
        inputs=[data, common_pb2.StepInput(name="factor", data_type=STRING)],
        outputs=[twice, common_pb2.StepOutput(name="size", data_type=NUMBER)],
    )
    execution = execution_pb2.Execution(name=EXECUTION)
    execution.inputs["factor"].json = json.dumps(factor)
    if with_data:
        execution.inputs["data"].file.size_bytes = 0
    return StoredExecution("env", execution, step)


def _spec(
    store: S3ObjectStore, run: StoredExecution, limits: dict[str, int] | None = None
) -> dict[str, Any]:
    return build_pod_spec(
        run, store, limits or {}, timedelta(minutes=5), dict(FAST_TRANSFERS)
    )


def _read(store: S3ObjectStore, key: str) -> bytes:
    return b"".join(store.iter_chunks(key))


def _result(store: S3ObjectStore) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(_read(store, result_key(EXECUTION)))
    return result


def test_inputs_arrive_and_outputs_and_result_are_stored(
    pod: Pod, store: S3ObjectStore
) -> None:
    store.put_stream(input_key(EXECUTION, "data"), [b"abc"])

    status = pod.run(_spec(store, _run("double", factor="3")))

    assert status == 0, pod.stderr
    assert _read(store, output_key(EXECUTION, "twice")) == b"abcabcabc"
    result = _result(store)
    assert result["status"] == "succeeded"
    assert result["outputs"]["size"] == {"kind": "json", "value": 3}
    described = result["outputs"]["twice"]
    assert described["size"] == 9
    assert described["sha256"] == hashlib.sha256(b"abcabcabc").hexdigest()


def test_a_failing_step_stores_its_reason_and_no_output(
    host_pod: Pod, store: S3ObjectStore
) -> None:
    store.put_stream(input_key(EXECUTION, "data"), [b"abc"])

    status = host_pod.run(_spec(store, _run("fails")))

    assert status == 1
    assert _result(store)["reason"] == "RuntimeError: it went wrong"
    assert not store.exists(output_key(EXECUTION, "twice"))


def test_a_missing_input_fails_naming_it_without_running_the_step(
    host_pod: Pod, store: S3ObjectStore
) -> None:
    status = host_pod.run(_spec(store, _run("double")))

    assert status == pod_entry.EXIT_TRANSFER_FAILED
    assert host_pod.message.startswith(
        "input 'data': cannot download it from the object store: HTTP 404"
    )
    assert "NoSuchKey" in host_pod.message
    assert not store.exists(result_key(EXECUTION))


def test_a_refused_upload_fails_naming_the_output(
    host_pod: Pod, store: S3ObjectStore
) -> None:
    store.put_stream(input_key(EXECUTION, "data"), [b"abc"])
    spec = _spec(store, _run("double"))
    twice = next(item for item in spec["outputs"] if item["name"] == "twice")
    # A bucket that does not exist refuses every upload.
    twice["url"] = twice["url"].replace(f"/{store.bucket}/", "/no-such-bucket/")

    status = host_pod.run(spec)

    assert status == pod_entry.EXIT_TRANSFER_FAILED
    assert host_pod.message.startswith(
        "output 'twice': cannot upload it to the object store: HTTP 404"
    )
    assert "NoSuchBucket" in host_pod.message
    # The result is stored only once every output is.
    assert not store.exists(result_key(EXECUTION))


def test_an_absent_optional_file_input_is_an_empty_stream(
    host_pod: Pod, store: S3ObjectStore
) -> None:
    status = host_pod.run(_spec(store, _run("double", with_data=False)))

    assert status == 0, host_pod.stderr
    assert _result(store)["outputs"]["size"]["value"] == 0


def test_default_file_contents_reach_the_pod_through_the_store(
    host_pod: Pod, store: S3ObjectStore
) -> None:
    run = _run("sees", data_default=b"default input", output_default=b"fallback")
    status = host_pod.run(_spec(store, run))

    assert status == 0, host_pod.stderr
    assert _read(store, input_key(EXECUTION, "data")) == b"default input"

    run = _run("echoes", data_default=b"default input", factor="!")
    status = host_pod.run(_spec(store, run))
    assert status == 0, host_pod.stderr
    assert _read(store, output_key(EXECUTION, "twice")) == b"default input!"


def test_the_step_does_not_see_the_pod_spec(
    host_pod: Pod, store: S3ObjectStore
) -> None:
    store.put_stream(input_key(EXECUTION, "data"), [b""])

    status = host_pod.run(_spec(store, _run("sees")))

    assert status == 0, host_pod.stderr
    assert _result(store)["outputs"]["size"]["value"] == 0


def test_large_json_inputs_travel_through_the_store(
    host_pod: Pod, store: S3ObjectStore
) -> None:
    store.put_stream(input_key(EXECUTION, "data"), [b"x"])
    factor = "7" * 59_000
    run = _run("echoes", factor=factor)
    # Two values this big would not fit one environment variable.
    extra = common_pb2.StepInput(name="more", data_type=ARRAY)
    run.step.inputs.append(extra)
    run.execution.inputs["more"].json = json.dumps(["y" * 59_000])
    spec = _spec(store, run)

    status = host_pod.run(spec)

    assert "values_url" in spec
    assert "value" not in spec["inputs"]["factor"]
    assert status == 0, host_pod.stderr
    assert _read(store, output_key(EXECUTION, "twice")) == b"x" + factor.encode()


def test_transfers_stream_without_holding_a_file_in_memory(
    host_pod: Pod, store: S3ObjectStore
) -> None:
    size = 48 * 1024 * 1024
    chunk = os.urandom(1024 * 1024)
    store.put_stream(input_key(EXECUTION, "data"), (chunk for _ in range(48)))
    spec = _spec(store, _run("passthrough"))
    # The peak memory of the pod's processes, measured by a parent of their own.
    probe = (
        "import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:]).returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe, *host_pod.command()],
        cwd=host_pod.image / "code",
        env=host_pod.environment(spec),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 0, completed.stderr
    assert store.stat(output_key(EXECUTION, "twice")).size == size
    peak_kib = int(completed.stdout.split()[-1])
    assert peak_kib * 1024 < size / 2


def test_sigterm_stops_the_step_and_stores_nothing(
    host_pod: Pod, store: S3ObjectStore, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    store.put_stream(input_key(EXECUTION, "data"), [str(marker).encode()])
    process = subprocess.Popen(
        host_pod.command(),
        cwd=host_pod.image / "code",
        env=host_pod.environment(_spec(store, _run("waits"))),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert eventually(marker.exists)
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=20)
    finally:
        process.kill()
        process.wait()

    assert status == 128 + signal.SIGTERM
    assert not store.exists(result_key(EXECUTION))


def test_a_pod_without_its_spec_says_so(host_pod: Pod) -> None:
    status = host_pod.run(None)

    assert status == pod_entry.EXIT_MISUSED
    assert "STEPFORGE_POD_SPEC is not set" in host_pod.message


def test_a_spec_of_another_protocol_is_refused(
    host_pod: Pod, store: S3ObjectStore
) -> None:
    spec = _spec(store, _run("double"))
    spec["protocol"] = 99

    status = host_pod.run(spec)

    assert status == pod_entry.EXIT_MISUSED
    assert "spec 'protocol' must be 1, not 99" in host_pod.message


# Transfers against a server that misbehaves on purpose.


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the first `failures` requests, then serves `content`
    and records what each PUT sent."""

    failures = 0
    content = b""
    puts: list[tuple[dict[str, str], bytes]] = []
    lock = threading.Lock()

    def do_GET(self) -> None:
        if self._fail():
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.content)))
        self.end_headers()
        self.wfile.write(self.content)

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self._fail():
            return
        type(self).puts.append((dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _fail(self) -> bool:
        with self.lock:
            if type(self).failures <= 0:
                return False
            type(self).failures -= 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Handler", (_Flaky,), {"puts": [], "failures": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _plain_spec(base: str, function: str) -> dict[str, Any]:
    return {
        "protocol": 1,
        "function_path": "steps.py",
        "function_name": function,
        "inputs": {
            "data": {"kind": "file", "url": f"{base}/in"},
            "factor": {"kind": "json", "value": "2"},
        },
        "outputs": [
            {"name": "twice", "data_type": "file", "default": None, "url": f"{base}/o"},
            {"name": "size", "data_type": "number", "default": None},
        ],
        "result_url": f"{base}/result",
        "max_json_bytes": 60000,
        "transfer": FAST_TRANSFERS,
    }


def test_transfers_that_fail_for_a_while_are_tried_again(
    host_pod: Pod, flaky: tuple[str, type[_Flaky]]
) -> None:
    base, handler = flaky
    handler.content = b"hello"
    handler.failures = 2

    status = host_pod.run(_plain_spec(base, "double"))

    assert status == 0, host_pod.stderr
    assert "HTTP 503" in host_pod.stderr and "trying again" in host_pod.stderr
    (headers, body), (_, result) = handler.puts
    assert body == b"hellohello"
    assert json.loads(result)["status"] == "succeeded"


def test_uploads_send_an_octet_stream_of_a_known_length(
    host_pod: Pod, flaky: tuple[str, type[_Flaky]]
) -> None:
    base, handler = flaky
    handler.content = b"data"

    assert host_pod.run(_plain_spec(base, "double")) == 0, host_pod.stderr

    headers, body = handler.puts[0]
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Length"] == str(len(body)) == "8"
    assert "Transfer-Encoding" not in headers


def test_a_transfer_that_keeps_failing_gives_up_with_the_count(
    host_pod: Pod, flaky: tuple[str, type[_Flaky]]
) -> None:
    base, handler = flaky
    handler.failures = 100

    status = host_pod.run(_plain_spec(base, "double"))

    assert status == pod_entry.EXIT_TRANSFER_FAILED
    assert host_pod.message == (
        "input 'data': cannot download it from the object store: "
        "HTTP 503 Service Unavailable (tried 3 times)"
    )
