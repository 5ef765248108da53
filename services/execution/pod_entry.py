"""Run one execution inside its step's image, in a Kubernetes pod.

The Job starts this file as ``python -u /stepforge/pod_entry.py`` with the pod
spec, JSON, in ``STEPFORGE_POD_SPEC``. It downloads the file inputs through the
presigned URLs the spec holds into the run folder, writes the runner's spec,
runs ``runner.py`` (next to this file) on a private copy of the step's code
(``code/`` next to this file), then uploads each file output and the runner's
result through presigned URLs, and exits with the runner's exit status. The
pod holds no object-store credentials. Every transfer streams in 1 MiB chunks,
with a timeout and retries; one that fails for good fails the execution, the
reason naming what was moved, written to the container's termination message.
Like the runner, this file imports only the standard library and runs on
Python 3.8 and later.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, Callable

PROTOCOL_VERSION = 1

# The runner's own statuses pass through: 0 succeeded, 1 failed, 2 misused.
EXIT_MISUSED = 2
# A download or upload failed for good.
EXIT_TRANSFER_FAILED = 3

SPEC_ENV = "STEPFORGE_POD_SPEC"
RUN_DIR_ENV = "STEPFORGE_RUN_DIR"
TERMINATION_LOG_ENV = "STEPFORGE_TERMINATION_LOG"
DEFAULT_RUN_DIR = "/stepforge/run"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"

CHUNK_SIZE = 1024 * 1024
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_ATTEMPTS = 4
DEFAULT_BACKOFF_S = 1.0
_MAX_BACKOFF_S = 30.0
# Kubernetes keeps at most 4096 bytes of a termination message.
_MESSAGE_LIMIT = 4000
_ERROR_BODY_LIMIT = 2048
_RETRIED_STATUSES = (408, 429)
# Variables meant for this file only; the step does not see them.
_OWN_VARIABLES = (SPEC_ENV, RUN_DIR_ENV, TERMINATION_LOG_ENV)


def main(argv: Sequence[str]) -> int:
    """Runs the execution the environment describes; returns the exit status."""
    if argv:
        return _fail("pod_entry takes no arguments", EXIT_MISUSED)
    signals = _Signals()
    try:
        spec = _load_spec(os.environ.get(SPEC_ENV))
        run = _Layout(os.environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR)
        run.prepare(_here())
        policy = _Policy(spec.get("transfer") or {})
        runner_spec = _fetch_inputs(spec, run, policy)
        status = signals.run_child(_runner_command(run, runner_spec), run.work)
        if signals.received is not None:
            return 128 + signals.received
        if os.path.isfile(run.result_path):
            _store_results(spec, run, policy)
        return status
    except _Misused as error:
        return _fail(str(error), EXIT_MISUSED)
    except _TransferFailed as error:
        return _fail(str(error), EXIT_TRANSFER_FAILED)
    except _Terminated as stop:
        return 128 + stop.signum


class _Misused(Exception):
    """The pod spec or the image is unusable."""


class _TransferFailed(Exception):
    """A download or upload failed for good."""


class _Terminated(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Retryable(Exception):
    """One attempt failed in a way that another attempt may not."""


class _Refused(Exception):
    """The object store refused the request; trying again cannot help."""


class _Policy:
    """How long one transfer may stall, and how often it is tried."""

    def __init__(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise _Misused("spec field 'transfer' must be an object")
        self.timeout_s = _positive(raw, "timeout_s", DEFAULT_TIMEOUT_S)
        self.attempts = int(_positive(raw, "attempts", DEFAULT_ATTEMPTS))
        self.backoff_s = _positive(raw, "backoff_s", DEFAULT_BACKOFF_S)


class _Layout:
    """The run folder: inputs, outputs, defaults, home, scratch and the step's
    working copy of its code."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.inputs = os.path.join(self.root, "inputs")
        self.outputs = os.path.join(self.root, "outputs")
        self.defaults = os.path.join(self.root, "defaults")
        self.work = os.path.join(self.root, "work")
        self.spec_path = os.path.join(self.root, "spec.json")
        self.result_path = os.path.join(self.root, "result.json")
        self.runner = ""

    def prepare(self, image_root: str) -> None:
        code = os.path.join(image_root, "code")
        self.runner = os.path.join(image_root, "runner.py")
        if not os.path.isfile(self.runner):
            raise _Misused(f"the image has no runner at {self.runner}")
        if not os.path.isdir(code):
            raise _Misused(f"the image has no step code at {code}")
        for folder in ("inputs", "outputs", "defaults", "home", "tmp"):
            os.makedirs(os.path.join(self.root, folder), exist_ok=True)
        # A private, writable copy, as the step gets on every backend.
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.copytree(code, self.work, symlinks=True)


class _Signals:
    """Passes SIGTERM and SIGINT on to the runner: as PID 1 of its container,
    this process would otherwise ignore them and the step would only ever be
    stopped by the kubelet's SIGKILL."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._child: subprocess.Popen[bytes] | None = None
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def run_child(self, command: list[str], cwd: str) -> int:
        # The runner stays in this process group, so whoever kills the group
        # kills the step too.
        self._child = subprocess.Popen(
            command, cwd=cwd, env=_step_environment(), stdin=subprocess.DEVNULL
        )
        returncode = self._child.wait()
        self._child = None
        return returncode if returncode >= 0 else 128 - returncode

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum
        child = self._child
        if child is None:
            raise _Terminated(signum)
        try:
            child.send_signal(signum)
        except OSError:
            pass


def _load_spec(text: str | None) -> dict[str, Any]:
    if not text:
        raise _Misused(f"the environment variable {SPEC_ENV} is not set")
    try:
        spec = json.loads(text)
    except ValueError as error:
        raise _Misused(f"{SPEC_ENV} is not valid JSON: {error}") from None
    if not isinstance(spec, dict):
        raise _Misused(f"{SPEC_ENV} must hold a JSON object")
    protocol = spec.get("protocol")
    if protocol != PROTOCOL_VERSION:
        raise _Misused(
            f"spec 'protocol' must be {PROTOCOL_VERSION}, not {protocol!r}: the "
            "image's pod_entry.py does not match the execution service"
        )
    for key, kind, rule in (
        ("inputs", dict, "an object"),
        ("outputs", list, "an array"),
        ("result_url", str, "a string"),
    ):
        if not isinstance(spec.get(key), kind):
            raise _Misused(f"spec field {key!r} must be {rule}")
    return spec


def _fetch_inputs(spec: dict[str, Any], run: _Layout, policy: _Policy) -> str:
    """Downloads what the runner needs; returns the path of its spec."""
    values: dict[str, Any] = {}
    values_url = spec.get("values_url")
    if values_url is not None:
        path = os.path.join(run.root, "values.json")
        _download(values_url, path, "the JSON inputs", policy)
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    inputs: dict[str, dict[str, Any]] = {}
    for name, ref in spec["inputs"].items():
        where = f"spec input {name!r}"
        if not isinstance(ref, dict) or ref.get("kind") not in ("json", "file"):
            raise _Misused(f"{where} must be an object of kind 'json' or 'file'")
        if ref["kind"] == "json":
            value = ref["value"] if "value" in ref else values.get(name)
            inputs[name] = {"kind": "json", "value": value}
            continue
        local: str | None = None
        if ref.get("url") is not None:
            local = _local_path(run.inputs, name)
            _download(ref["url"], local, f"input {name!r}", policy)
        inputs[name] = {"kind": "file", "path": local}
    outputs = []
    for index, item in enumerate(spec["outputs"]):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _Misused(f"spec output #{index} must be an object with a name")
        name = item["name"]
        default = item.get("default")
        if isinstance(default, dict) and default.get("kind") == "file":
            path = _local_path(run.defaults, name)
            _download(
                default.get("url"), path, f"the default of output {name!r}", policy
            )
            default = {"kind": "file", "path": path}
        outputs.append(
            {"name": name, "data_type": item.get("data_type"), "default": default}
        )
    runner_spec = {
        "protocol": 1,
        "function_path": spec.get("function_path"),
        "function_name": spec.get("function_name"),
        "inputs": inputs,
        "outputs": outputs,
        "output_dir": run.outputs,
        "result_path": run.result_path,
        "max_json_bytes": spec.get("max_json_bytes"),
    }
    if "limits" in spec:
        runner_spec["limits"] = spec["limits"]
    with open(run.spec_path, "w", encoding="utf-8") as handle:
        json.dump(runner_spec, handle)
    return run.spec_path


def _runner_command(run: _Layout, spec_path: str) -> list[str]:
    return [sys.executable, "-u", run.runner, spec_path]


def _store_results(spec: dict[str, Any], run: _Layout, policy: _Policy) -> None:
    """Uploads each file output, then the result: a stored result means every
    output it names is stored too."""
    with open(run.result_path, encoding="utf-8") as handle:
        result = json.load(handle)
    if result.get("status") == "succeeded":
        urls = {
            item.get("name"): item.get("url")
            for item in spec["outputs"]
            if isinstance(item, dict)
        }
        for name, value in sorted(result.get("outputs", {}).items()):
            if value.get("kind") != "file":
                continue
            url = urls.get(name)
            if not isinstance(url, str):
                raise _Misused(f"spec output {name!r} has no upload URL")
            _upload(value["path"], url, f"output {name!r}", policy)
    _upload(run.result_path, spec["result_url"], "the step's result", policy)


def _download(url: Any, path: str, what: str, policy: _Policy) -> None:
    if not isinstance(url, str):
        raise _Misused(f"{what}: the spec gives no download URL")

    def attempt() -> None:
        partial = path + ".part"
        connection, target = _connect(url, policy.timeout_s)
        try:
            connection.request("GET", target)
            response = connection.getresponse()
            _check_status(response)
            expected = response.getheader("Content-Length")
            size = 0
            with open(partial, "wb") as out:
                while True:
                    chunk = response.read(CHUNK_SIZE)
                    if not chunk:
                        break
                    out.write(chunk)
                    size += len(chunk)
            if expected is not None and expected.isdigit() and int(expected) != size:
                raise _Retryable(f"the transfer ended after {size} of {expected} bytes")
            os.replace(partial, path)
        finally:
            connection.close()
            if os.path.exists(partial):
                os.unlink(partial)

    _with_retries(attempt, f"{what}: cannot download it from the object store", policy)


def _upload(path: str, url: str, what: str, policy: _Policy) -> None:
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise _TransferFailed(f"{what}: cannot read {path}: {error}") from None

    def attempt() -> None:
        connection, target = _connect(url, policy.timeout_s)
        try:
            connection.putrequest("PUT", target, skip_accept_encoding=True)
            # A presigned PUT signs no content type; S3-compatible stores and
            # moto then read any other type as a form and store nothing.
            connection.putheader("Content-Type", "application/octet-stream")
            connection.putheader("Content-Length", str(size))
            connection.endheaders()
            try:
                with open(path, "rb") as source:
                    while True:
                        chunk = source.read(CHUNK_SIZE)
                        if not chunk:
                            break
                        connection.send(chunk)
            except OSError:
                # A store that refuses a request may answer before it reads
                # the body: its answer says more than the broken pipe.
                response = _answer_if_any(connection)
                if response is None:
                    raise
                _check_status(response)
                raise
            response = connection.getresponse()
            _check_status(response)
            response.read()
        finally:
            connection.close()

    _with_retries(attempt, f"{what}: cannot upload it to the object store", policy)


def _with_retries(attempt: Callable[[], None], failure: str, policy: _Policy) -> None:
    for number in range(1, policy.attempts + 1):
        try:
            attempt()
            return
        except _Refused as error:
            raise _TransferFailed(f"{failure}: {error}") from None
        except (_Retryable, OSError, http.client.HTTPException) as error:
            detail = _describe(error)
            if number == policy.attempts:
                raise _TransferFailed(
                    f"{failure}: {detail} (tried {policy.attempts} times)"
                ) from None
            delay = min(policy.backoff_s * 2 ** (number - 1), _MAX_BACKOFF_S)
            _say(f"{failure}: {detail}; trying again in {delay:g} s")
            time.sleep(delay)


def _connect(url: str, timeout_s: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Refused("the URL is not an http or https URL")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname,
            parts.port,
            timeout=timeout_s,
            context=ssl.create_default_context(),
        )
    else:
        connection = http.client.HTTPConnection(
            parts.hostname, parts.port, timeout=timeout_s
        )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return connection, target


def _answer_if_any(
    connection: http.client.HTTPConnection,
) -> http.client.HTTPResponse | None:
    try:
        return connection.getresponse()
    except (OSError, http.client.HTTPException):
        return None


def _check_status(response: http.client.HTTPResponse) -> None:
    if 200 <= response.status < 300:
        return
    try:
        body = response.read(_ERROR_BODY_LIMIT).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        body = ""
    message = f"HTTP {response.status} {response.reason}".rstrip()
    code = _between(body, "<Code>", "</Code>")
    if code:
        message += f" ({code})"
    if response.status >= 500 or response.status in _RETRIED_STATUSES:
        raise _Retryable(message)
    raise _Refused(message)


def _between(text: str, start: str, end: str) -> str:
    head, found, rest = text.partition(start)
    return rest.partition(end)[0].strip() if found else ""


def _describe(error: BaseException) -> str:
    text = str(error)
    name = type(error).__name__
    if isinstance(error, _Retryable):
        return text
    return f"{name}: {text}" if text else name


def _local_path(folder: str, name: str) -> str:
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise _Misused(f"spec name {name!r} must be a plain file name")
    return os.path.join(folder, name)


def _positive(raw: dict[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise _Misused(f"spec 'transfer' field {key!r} must be a positive number")
    return float(value)


def _step_environment() -> dict[str, str]:
    return {
        key: value for key, value in os.environ.items() if key not in _OWN_VARIABLES
    }


def _here() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def _fail(reason: str, status: int) -> int:
    """Says why the pod failed, in its log and in its termination message."""
    _say(reason)
    path = os.environ.get(TERMINATION_LOG_ENV) or DEFAULT_TERMINATION_LOG
    data = reason.encode("utf-8")[:_MESSAGE_LIMIT]
    try:
        with open(path, "wb") as handle:
            handle.write(data)
    except OSError as error:
        _say(f"cannot write the termination message to {path}: {error}")
    return status


def _say(message: str) -> None:
    print(f"[stepforge] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
