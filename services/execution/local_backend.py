"""The embedded execution backend: each execution is a process group on this
host, inside its step's built environment, under the stdlib-only runner."""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

from stepforge.services.core.languages import find_language
from stepforge.services.core.limits import MAX_JSON_VALUE_BYTES
from stepforge.services.core.names import short_name
from stepforge.services.core.object_store import ObjectStore
from stepforge.services.execution.gpus import GpuAllocator, cuda_visible_devices
from stepforge.services.execution.lifecycle import SYSTEM, Lifecycle
from stepforge.services.execution.limits import (
    Limits,
    OutputBudget,
    effective_limits,
    execution_timeout_s,
)
from stepforge.services.execution.logs import LogBook
from stepforge.services.execution.object_keys import output_key
from stepforge.services.execution.runner_spec import runner_inputs, runner_outputs
from stepforge.services.execution.sandbox import sandbox_available, sandboxed
from stepforge.services.execution.store import StoredExecution
from stepforge.v1 import execution_pb2

logger = logging.getLogger(__name__)

RUNNER = Path(__file__).with_name("runner.py")
# How long a process group gets to exit after SIGTERM before SIGKILL.
TERMINATE_GRACE_S = 3.0
INTERRUPTED_REASON = "interrupted by a restart of the execution service"
STOPPED_REASON = "stopped with the execution service"
# Lines are read in pieces of at most this, so a step that writes without
# newlines cannot make the executor hold its whole output at once.
READ_CHUNK_BYTES = 1024 * 1024

# (runtime_id, archive_sha256) -> (interpreter of the step's environment, code folder)
RuntimeLocator = Callable[[str, str], tuple[Path, Path]]


@dataclass(frozen=True)
class LocalBackendSettings:
    runs_dir: Path
    max_concurrent: int = field(default_factory=lambda: os.cpu_count() or 1)
    # Run GPU steps on the CPU, with a warning in their logs, on a host with no GPU.
    gpu_fallback_to_cpu: bool = False
    # What an execution's zero limits become; None for the platform's defaults.
    default_limits: Limits | None = None
    # Folders of the services that steps must not see (see sandbox.py).
    hidden_roots: tuple[Path, ...] = ()


class LocalBackend:
    """Runs at most `max_concurrent` executions at once; the others wait in the
    order they came. GPU steps also wait, in their own line, for a device of
    their own, so they never hold back CPU steps."""

    def __init__(
        self,
        settings: LocalBackendSettings,
        lifecycle: Lifecycle,
        logs: LogBook,
        objects: ObjectStore,
        locate_runtime: RuntimeLocator,
        gpus: GpuAllocator,
    ) -> None:
        self._settings = settings
        self._lifecycle = lifecycle
        self._logs = logs
        self._objects = objects
        self._locate_runtime = locate_runtime
        self._gpus = gpus
        self._slots = GpuAllocator(range(max(1, settings.max_concurrent)))
        self._cancelled: dict[str, threading.Event] = {}
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._running: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._cpu_line: queue.Queue[StoredExecution | None] = queue.Queue()
        self._gpu_line: queue.Queue[StoredExecution | None] = queue.Queue()
        self._dispatchers = [
            threading.Thread(
                target=self._dispatch, args=(line, uses_gpu), name=name, daemon=True
            )
            for line, uses_gpu, name in (
                (self._cpu_line, False, "dispatch-cpu"),
                (self._gpu_line, True, "dispatch-gpu"),
            )
        ]
        for dispatcher in self._dispatchers:
            dispatcher.start()

    def submit(self, run: StoredExecution) -> None:
        name = run.execution.name
        with self._lock:
            self._cancelled[name] = threading.Event()
        self._lifecycle.started(name)
        language = find_language(run.step.container_config.language)
        if language is None or not language.needs_gpu:
            self._cpu_line.put(run)
        elif self._gpus.has_devices:
            self._gpu_line.put(run)
        elif self._settings.gpu_fallback_to_cpu:
            self._logs.write(
                name,
                SYSTEM,
                f"warning: language {language.name} asks for a GPU and this host "
                "has none; running on the CPU",
            )
            self._cpu_line.put(run)
        else:
            self._forget(name)
            self._finish(
                name,
                execution_pb2.EXECUTION_STATUS_FAILED,
                f"language {language.name} needs a GPU and this host has none "
                "(the execution service can be set to run such steps on the CPU)",
            )

    def cancel(self, name: str) -> bool:
        """Stops the execution wherever it is, waiting or running; False when
        this backend does not run it."""
        with self._lock:
            cancelled = self._cancelled.get(name)
            process = self._processes.get(name)
        if cancelled is not None:
            cancelled.set()
        if process is not None:
            _terminate_in_background(process)
        return cancelled is not None

    def recover(self, active: list[StoredExecution]) -> None:
        """The executions a previous start left running fail; a step process
        that outlived that start is killed with its group."""
        for run in active:
            run_dir = self._run_dir(run.execution.name)
            _kill_leftover(run_dir)
            shutil.rmtree(run_dir, ignore_errors=True)
            self._finish(
                run.execution.name,
                execution_pb2.EXECUTION_STATUS_FAILED,
                INTERRUPTED_REASON,
            )

    def shutdown(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        with self._lock:
            names = list(self._cancelled)
        for name in names:
            self.cancel(name)
        self._cpu_line.put(None)
        self._gpu_line.put(None)
        deadline = time.monotonic() + timeout_s
        for dispatcher in self._dispatchers:
            dispatcher.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            running = list(self._running.values())
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _dispatch(
        self, line: queue.Queue[StoredExecution | None], uses_gpu: bool
    ) -> None:
        """Starts the executions of one line in order, each once it holds what
        it needs: a GPU for GPU steps, then a run slot."""
        while (run := line.get()) is not None:
            name = run.execution.name
            with self._lock:
                cancelled = self._cancelled.get(name) or threading.Event()
            gpu = self._gpus.acquire(cancelled=cancelled) if uses_gpu else None
            slot = None
            if not uses_gpu or gpu is not None:
                slot = self._slots.acquire(cancelled=cancelled)
            if slot is None:
                if gpu is not None:
                    self._gpus.release(gpu)
                self._forget(name)
                self._stopped(name, "cancelled before it started")
                continue
            thread = threading.Thread(
                target=self._run,
                args=(run, gpu, slot, cancelled),
                name=f"run-{name}",
                daemon=True,
            )
            with self._lock:
                self._running[name] = thread
            thread.start()

    def _run(
        self,
        run: StoredExecution,
        gpu: int | None,
        slot: int,
        cancelled: threading.Event,
    ) -> None:
        name = run.execution.name
        try:
            self._execute(run, gpu, cancelled)
        except Exception as error:
            logger.exception("execution %s failed in the backend", name)
            self._finish(
                name, execution_pb2.EXECUTION_STATUS_FAILED, f"internal error: {error}"
            )
        finally:
            self._slots.release(slot)
            if gpu is not None:
                self._gpus.release(gpu)
            self._forget(name)

    def _stopped(self, name: str, reason: str) -> None:
        """Ends an execution that was stopped: cancelled by a user, or failed
        because the service itself is stopping."""
        if self._stopping.is_set():
            self._finish(name, execution_pb2.EXECUTION_STATUS_FAILED, STOPPED_REASON)
        else:
            self._finish(name, execution_pb2.EXECUTION_STATUS_CANCELLED, reason)

    def _run_dir(self, name: str) -> Path:
        return self._settings.runs_dir / short_name(name)

    def _forget(self, name: str) -> None:
        with self._lock:
            self._cancelled.pop(name, None)
            self._running.pop(name, None)

    def _execute(
        self, run: StoredExecution, gpu: int | None, cancelled: threading.Event
    ) -> None:
        execution, step = run.execution, run.step
        name = execution.name
        run_dir = self._run_dir(name)
        try:
            limits = effective_limits(execution.limits, self._settings.default_limits)
        except ValueError as error:
            self._finish(name, execution_pb2.EXECUTION_STATUS_FAILED, str(error))
            return
        # CUDA reserves far more address space than any useful memory limit.
        limit_memory = gpu is None
        try:
            python, code = self._locate_runtime(step.runtime_id, step.archive_sha256)
            if cancelled.is_set() or not self._lifecycle.mark_running(
                name, [] if gpu is None else [str(gpu)]
            ):
                self._stopped(name, "cancelled before it started")
                return
            self._logs.write(
                name,
                SYSTEM,
                f"running {step.name} with {python}"
                + (f" on GPU {gpu}" if gpu is not None else ""),
            )
            self._logs.write(name, SYSTEM, f"limits: {limits.describe(limit_memory)}")
            spec_path = self._prepare(
                run, run_dir, code, limits.for_runner(limit_memory)
            )
            command = [str(python), "-u", str(RUNNER), str(spec_path)]
            if self._settings.hidden_roots and sandbox_available():
                command = sandboxed(
                    command,
                    self._settings.hidden_roots,
                    run=run_dir,
                    environment=python.parent.parent,
                )
            process = subprocess.Popen(
                command,
                cwd=run_dir / "work",
                env=_step_environment(python, run_dir, name, gpu),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            (run_dir / "pid").write_text(str(process.pid))
            output = OutputBudget(
                limits.output_bytes,
                on_exceeded=partial(_terminate_in_background, process),
            )
            timed_out = self._supervise(
                name, process, cancelled, execution_timeout_s(execution), output
            )
            self._conclude(
                run, run_dir, process, limits, cancelled.is_set(), timed_out, output
            )
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def _prepare(
        self,
        run: StoredExecution,
        run_dir: Path,
        code: Path,
        runner_limits: dict[str, int],
    ) -> Path:
        """Lays out the run folder: a private copy of the code to work in, the
        inputs, the output folder and the runner's spec."""
        step = run.step
        shutil.rmtree(run_dir, ignore_errors=True)
        for folder in ("inputs", "outputs", "defaults", "home", "tmp"):
            (run_dir / folder).mkdir(parents=True)
        shutil.copytree(code, run_dir / "work", symlinks=True)

        def place_input(name: str, source: str | bytes | None) -> dict[str, Any]:
            if source is None:
                return {"kind": "file", "path": None}
            path = run_dir / "inputs" / name
            if isinstance(source, bytes):
                path.write_bytes(source)
            else:
                self._objects.download_file(source, path)
            return {"kind": "file", "path": str(path)}

        def place_output_default(name: str, content: bytes) -> dict[str, Any]:
            path = run_dir / "defaults" / name
            path.write_bytes(content)
            return {"kind": "file", "path": str(path)}

        inputs = runner_inputs(run, self._objects, place_input)
        outputs = runner_outputs(run, place_output_default)
        spec = {
            "protocol": 1,
            "function_path": step.function_path,
            "function_name": step.function_name,
            "inputs": inputs,
            "outputs": outputs,
            "output_dir": str(run_dir / "outputs"),
            "result_path": str(run_dir / "result.json"),
            "max_json_bytes": MAX_JSON_VALUE_BYTES,
            "limits": runner_limits,
        }
        spec_path = run_dir / "spec.json"
        spec_path.write_text(json.dumps(spec))
        return spec_path

    def _supervise(
        self,
        name: str,
        process: subprocess.Popen[bytes],
        cancelled: threading.Event,
        timeout_s: float,
        output: OutputBudget,
    ) -> bool:
        """Streams the process's output to the log until it ends; True when it
        was stopped for running past `timeout_s`."""
        readers = [
            threading.Thread(
                target=self._pump, args=(name, stream, kind, output), daemon=True
            )
            for stream, kind in (
                (process.stdout, execution_pb2.LOG_STREAM_STDOUT),
                (process.stderr, execution_pb2.LOG_STREAM_STDERR),
            )
        ]
        for reader in readers:
            reader.start()
        with self._lock:
            self._processes[name] = process
        if cancelled.is_set():
            _terminate(process)
        timed_out = False
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _terminate(process)
        finally:
            with self._lock:
                self._processes.pop(name, None)
        # Children the step left behind would hold the pipes open.
        _kill_group(process)
        for reader in readers:
            reader.join(timeout=5)
        return timed_out

    def _pump(
        self, name: str, stream: IO[bytes] | None, kind: int, output: OutputBudget
    ) -> None:
        """Stores each line of `stream` until the step's output passes its
        limit, then reads on without storing, so the step never blocks on a
        full pipe before it is killed."""
        if stream is None:
            return
        with stream:
            continues_line = False
            while raw := stream.readline(READ_CHUNK_BYTES):
                # The rest of a line longer than a chunk is counted, not stored:
                # the log cuts such a line anyway.
                if output.spend(len(raw)) and not continues_line:
                    self._logs.write(
                        name, kind, raw.decode("utf-8", "replace").rstrip("\r\n")
                    )
                continues_line = not raw.endswith(b"\n")

    def _conclude(
        self,
        run: StoredExecution,
        run_dir: Path,
        process: subprocess.Popen[bytes],
        limits: Limits,
        cancelled: bool,
        timed_out: bool,
        output: OutputBudget,
    ) -> None:
        name = run.execution.name
        if cancelled:
            self._stopped(name, "cancelled while running")
            return
        if timed_out:
            limit = execution_timeout_s(run.execution)
            self._finish(
                name,
                execution_pb2.EXECUTION_STATUS_FAILED,
                f"timed out after {limit:g} s",
            )
            return
        if output.exceeded:
            self._finish(
                name,
                execution_pb2.EXECUTION_STATUS_FAILED,
                f"the step wrote more than its output limit of {output.limit} bytes",
            )
            return
        if process.returncode == -signal.SIGXCPU:
            self._finish(
                name,
                execution_pb2.EXECUTION_STATUS_FAILED,
                f"the step used more than its CPU time limit of {limits.cpu_seconds} s",
            )
            return
        result_path = run_dir / "result.json"
        if not result_path.is_file():
            self._finish(
                name,
                execution_pb2.EXECUTION_STATUS_FAILED,
                _exit_reason(process.returncode),
            )
            return
        result = json.loads(result_path.read_text())
        if result.get("status") != "succeeded":
            reason = str(result.get("reason") or _exit_reason(process.returncode))
            self._finish(name, execution_pb2.EXECUTION_STATUS_FAILED, reason)
            return
        outputs = {}
        for output_name, value in result["outputs"].items():
            if value["kind"] == "json":
                outputs[output_name] = execution_pb2.ExecutionValue(
                    json=json.dumps(value["value"])
                )
            else:
                # The run folder goes once the run ends, so the file is moved
                # into the store rather than copied.
                self._objects.move_file(
                    output_key(name, output_name), Path(value["path"])
                )
                outputs[output_name] = execution_pb2.ExecutionValue(
                    file=execution_pb2.StoredFile(
                        size_bytes=value["size"], sha256=value["sha256"]
                    )
                )
        self._finish(name, execution_pb2.EXECUTION_STATUS_SUCCEEDED, outputs=outputs)

    def _finish(
        self,
        name: str,
        status: execution_pb2.ExecutionStatus.ValueType,
        reason: str = "",
        outputs: dict[str, execution_pb2.ExecutionValue] | None = None,
    ) -> None:
        self._lifecycle.finish(name, status, reason, outputs)


def _step_environment(
    python: Path, run_dir: Path, name: str, gpu: int | None
) -> dict[str, str]:
    """What the step sees: its own environment and folders, and none of the
    service's variables, credentials included."""
    return {
        "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
        "VIRTUAL_ENV": str(python.parent.parent),
        "HOME": str(run_dir / "home"),
        "TMPDIR": str(run_dir / "tmp"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "CUDA_VISIBLE_DEVICES": cuda_visible_devices(gpu),
        # Device indices come from NVML, which numbers by PCI bus; CUDA's own
        # default order (fastest first) could point at another card.
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "STEPFORGE_EXECUTION_ID": short_name(name),
    }


def _exit_reason(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        ending = f"was killed by {signal.Signals(-returncode).name}"
    else:
        ending = f"exited with status {returncode}"
    return f"the step's process {ending} before it reported a result"


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole group, then SIGKILL to what is left after a grace."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(process)


def _terminate_in_background(process: subprocess.Popen[bytes]) -> None:
    threading.Thread(target=_terminate, args=(process,), daemon=True).start()


def _kill_leftover(run_dir: Path) -> None:
    """Kills the process group a previous start ran in `run_dir`, if any of its
    processes is left; they carry the execution's id in their environment,
    which tells them apart from unrelated processes that reuse the id."""
    try:
        group = int((run_dir / "pid").read_text())
    except (OSError, ValueError):
        return
    marker = f"STEPFORGE_EXECUTION_ID={run_dir.name}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The fields after the command name, which may hold spaces.
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[2]) != group:
                continue
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                os.killpg(group, signal.SIGKILL)
                return
        except (OSError, ValueError, IndexError):
            continue


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
