"""GPU discovery and per-execution GPU allocation for the local backend.

Discovery asks NVML first (through ctypes, so no driver binding package is
needed) and falls back to nvidia-smi; STEPFORGE_GPUS overrides both. The
allocator gives each GPU execution a device of its own and queues the rest in
arrival order.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

GPUS_ENV = "STEPFORGE_GPUS"
NVML_LIBRARY = "libnvidia-ml.so.1"
NVIDIA_SMI_TIMEOUT_S = 10.0

_NVIDIA_SMI_ARGS = (
    "--query-gpu=index,name,uuid,memory.total",
    "--format=csv,noheader,nounits",
)
_NVML_STRING_BUFFER = 96
_MIB = 1024 * 1024
# How often a waiter with a cancel event looks at it: short, so cancelling a
# queued execution takes effect at once rather than at the next release.
_CANCEL_POLL_S = 0.05


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as discovery reports it."""

    index: int
    name: str
    uuid: str
    memory_total_bytes: int | None


def discover_gpus(
    *,
    nvidia_smi: str | None = None,
    nvml_library: str | None = NVML_LIBRARY,
    timeout_s: float = NVIDIA_SMI_TIMEOUT_S,
) -> list[GpuDevice]:
    """Lists this host's GPUs; [] when it has none or none can be found.

    STEPFORGE_GPUS, when set, replaces discovery ("" or "none": no GPU,
    "0,1": those indices). Otherwise NVML is asked (skipped when
    `nvml_library` is None), then `nvidia_smi` (default: the one on PATH),
    which gets `timeout_s` to answer. Discovery failures are logged, never
    raised; a malformed STEPFORGE_GPUS raises ValueError.
    """
    configured = os.environ.get(GPUS_ENV)
    if configured is not None:
        devices = _parse_configured(configured)
        source = GPUS_ENV
    else:
        found = _query_nvml(nvml_library) if nvml_library is not None else None
        if found is not None:
            devices, source = found, "NVML"
        else:
            devices, source = _query_nvidia_smi(nvidia_smi, timeout_s), "nvidia-smi"
    logger.info(
        "found %d GPU(s) via %s%s",
        len(devices),
        source,
        "".join(f"; {d.index}: {d.name} {d.uuid}".rstrip() for d in devices),
    )
    return devices


class GpuAllocator:
    """Hands out GPU indices one per holder, first come first served.

    Thread-safe. A device is free again once its holder calls `release`.
    """

    def __init__(self, devices: Sequence[int]) -> None:
        seen: set[int] = set()
        for index in devices:
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise ValueError(
                    f"devices: each entry must be a non-negative integer GPU "
                    f"index, got {index!r}"
                )
            if index in seen:
                raise ValueError(f"devices: GPU index {index} is listed twice")
            seen.add(index)
        self._total = len(seen)
        self._free = set(seen)
        self._held: set[int] = set()
        self._waiters: deque[object] = deque()
        self._condition = threading.Condition()

    @property
    def total(self) -> int:
        return self._total

    @property
    def free_count(self) -> int:
        with self._condition:
            return len(self._free)

    @property
    def waiting(self) -> int:
        """How many `acquire` calls are queued for a device."""
        with self._condition:
            return len(self._waiters)

    @property
    def has_devices(self) -> bool:
        return self._total > 0

    def acquire(
        self,
        *,
        cancelled: threading.Event | None = None,
        timeout_s: float | None = None,
    ) -> int | None:
        """Blocks until a device is free and this caller is first in line.

        Returns the device index, or None once `cancelled` is set or
        `timeout_s` has passed; a caller that gives up leaves the queue.
        Raises RuntimeError when there are no devices at all, since the wait
        would never end.
        """
        if not self.has_devices:
            raise RuntimeError("no GPU is configured on this host; cannot acquire one")
        if timeout_s is not None and timeout_s < 0:
            raise ValueError(f"timeout_s must be >= 0, got {timeout_s}")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        ticket = object()
        with self._condition:
            self._waiters.append(ticket)
            try:
                while True:
                    if cancelled is not None and cancelled.is_set():
                        return None
                    if self._waiters[0] is ticket and self._free:
                        self._waiters.popleft()
                        index = self._take()
                        if self._waiters and self._free:
                            self._condition.notify_all()
                        return index
                    wait_s = _CANCEL_POLL_S if cancelled is not None else None
                    if deadline is not None:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return None
                        wait_s = remaining if wait_s is None else min(wait_s, remaining)
                    self._condition.wait(wait_s)
            finally:
                if ticket in self._waiters:
                    self._waiters.remove(ticket)
                    # The caller behind this one may now be first in line.
                    self._condition.notify_all()

    def try_acquire(self) -> int | None:
        """Takes a free device now, or returns None; never jumps the queue."""
        with self._condition:
            if self._waiters or not self._free:
                return None
            return self._take()

    def release(self, index: int) -> None:
        """Returns a device taken with `acquire` or `try_acquire`."""
        with self._condition:
            if index not in self._held:
                raise ValueError(f"index: GPU {index} is not held, cannot release it")
            self._held.remove(index)
            self._free.add(index)
            self._condition.notify_all()

    def _take(self) -> int:
        index = min(self._free)
        self._free.remove(index)
        self._held.add(index)
        return index


def cuda_visible_devices(index: int | None) -> str:
    """The CUDA_VISIBLE_DEVICES value exposing only `index` ("" hides all)."""
    if index is None:
        return ""
    if index < 0:
        raise ValueError(f"index: GPU index must be >= 0, got {index}")
    return str(index)


def _parse_configured(value: str) -> list[GpuDevice]:
    text = value.strip()
    if text == "" or text.lower() == "none":
        return []
    indices: list[int] = []
    for part in text.split(","):
        item = part.strip()
        if not (item.isascii() and item.isdigit()):
            raise ValueError(
                f"{GPUS_ENV}={value!r}: each comma-separated entry must be a GPU "
                f'index (a non-negative integer), or the whole value "none"; '
                f"got {item!r}"
            )
        index = int(item)
        if index in indices:
            raise ValueError(f"{GPUS_ENV}={value!r}: GPU index {index} is listed twice")
        indices.append(index)
    return [GpuDevice(index, "configured", "", None) for index in indices]


class _NvmlMemory(ctypes.Structure):
    _fields_ = [
        ("total", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    ]


class _NvmlError(Exception):
    def __init__(self, function: str, code: int | None) -> None:
        reason = "missing from the library" if code is None else f"returned {code}"
        super().__init__(f"{function} {reason}")


def _query_nvml(library: str) -> list[GpuDevice] | None:
    """The devices NVML reports, or None when NVML cannot be used."""
    try:
        nvml = ctypes.CDLL(library)
    except OSError as exc:
        logger.debug("NVML not available: cannot load %s: %s", library, exc)
        return None
    try:
        _nvml_call(nvml, "nvmlInit_v2")
    except _NvmlError as exc:
        logger.debug("NVML not available: %s", exc)
        return None
    try:
        return _nvml_devices(nvml)
    except _NvmlError as exc:
        logger.debug("NVML not available: %s", exc)
        return None
    finally:
        try:
            _nvml_call(nvml, "nvmlShutdown")
        except _NvmlError as exc:
            logger.debug("NVML shutdown failed: %s", exc)


def _nvml_devices(nvml: ctypes.CDLL) -> list[GpuDevice]:
    count = ctypes.c_uint()
    _nvml_call(nvml, "nvmlDeviceGetCount_v2", ctypes.byref(count))
    devices = []
    for index in range(count.value):
        handle = ctypes.c_void_p()
        _nvml_call(
            nvml,
            "nvmlDeviceGetHandleByIndex_v2",
            ctypes.c_uint(index),
            ctypes.byref(handle),
        )
        name = ctypes.create_string_buffer(_NVML_STRING_BUFFER)
        _nvml_call(nvml, "nvmlDeviceGetName", handle, name, ctypes.c_uint(len(name)))
        uuid = ctypes.create_string_buffer(_NVML_STRING_BUFFER)
        _nvml_call(nvml, "nvmlDeviceGetUUID", handle, uuid, ctypes.c_uint(len(uuid)))
        memory = _NvmlMemory()
        _nvml_call(nvml, "nvmlDeviceGetMemoryInfo", handle, ctypes.byref(memory))
        devices.append(
            GpuDevice(
                index=index,
                name=name.value.decode("utf-8", "replace"),
                uuid=uuid.value.decode("utf-8", "replace"),
                memory_total_bytes=int(memory.total),
            )
        )
    return devices


def _nvml_call(nvml: ctypes.CDLL, function: str, *args: object) -> None:
    try:
        entry = getattr(nvml, function)
    except AttributeError:
        raise _NvmlError(function, None) from None
    code = entry(*args)
    if code != 0:
        raise _NvmlError(function, int(code))


def _query_nvidia_smi(binary: str | None, timeout_s: float) -> list[GpuDevice]:
    path = binary if binary is not None else shutil.which("nvidia-smi")
    if path is None:
        logger.debug("nvidia-smi is not on PATH")
        return []
    try:
        completed = subprocess.run(
            [path, *_NVIDIA_SMI_ARGS],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        logger.warning("%s gave no answer within %.1f s", path, timeout_s)
        return []
    except OSError as exc:
        logger.warning("cannot run %s: %s", path, exc)
        return []
    if completed.returncode != 0:
        logger.warning(
            "%s exited with status %d: %s",
            path,
            completed.returncode,
            completed.stderr.strip()[:500],
        )
        return []
    try:
        return [
            _parse_nvidia_smi_line(line)
            for line in completed.stdout.splitlines()
            if line.strip()
        ]
    except ValueError as exc:
        logger.warning("cannot read the output of %s: %s", path, exc)
        return []


def _parse_nvidia_smi_line(line: str) -> GpuDevice:
    fields = [field.strip() for field in line.split(",")]
    if len(fields) < 4:
        raise ValueError(f"expected index, name, uuid, memory in {line!r}")
    index_text, uuid, memory_text = fields[0], fields[-2], fields[-1]
    # A product name could hold a comma; the other columns never do.
    name = ", ".join(fields[1:-2])
    if not (index_text.isascii() and index_text.isdigit()):
        raise ValueError(f"GPU index {index_text!r} is not an integer in {line!r}")
    memory: int | None
    if memory_text.isascii() and memory_text.isdigit():
        memory = int(memory_text) * _MIB
    elif memory_text.startswith("[") and memory_text.endswith("]"):
        # "[N/A]" or "[Not Supported]": the device does not report it.
        memory = None
    else:
        raise ValueError(f"memory {memory_text!r} is not a MiB count in {line!r}")
    return GpuDevice(int(index_text), name, uuid, memory)
