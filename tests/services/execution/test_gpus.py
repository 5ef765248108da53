"""GPU discovery through a fake nvidia-smi and the FIFO GPU allocator."""

from __future__ import annotations

import ctypes
import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stepforge.services.execution.gpus import (
    GPUS_ENV,
    NVML_LIBRARY,
    GpuAllocator,
    GpuDevice,
    cuda_visible_devices,
    discover_gpus,
)

MIB = 1024 * 1024
NO_NVML = str(Path("/nonexistent") / "libnvidia-ml.so.1")
JOIN_S = 5.0

TWO_GPUS = (
    "0, NVIDIA H200, GPU-11111111-2222-3333-4444-555555555555, 143771\n"
    "1, NVIDIA A100-SXM4-80GB, GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee, 81920\n"
)


@pytest.fixture(autouse=True)
def _no_gpu_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GPUS_ENV, raising=False)


def fake_smi(directory: Path, body: str, name: str = "nvidia-smi") -> Path:
    script = directory / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def printing_smi(directory: Path, output: str) -> Path:
    (directory / "smi-output").write_text(output)
    return fake_smi(
        directory,
        f'printf "%s\\n" "$@" > "{directory}/smi-args"\ncat "{directory}/smi-output"\n',
    )


FAKE_NVML_C = r"""
#include <stdio.h>

typedef struct { unsigned long long total, free, used; } memory_t;
static int shutdowns = 0;

int fake_shutdowns(void) { return shutdowns; }
int nvmlInit_v2(void) { return INIT_RC; }
int nvmlShutdown(void) { shutdowns++; return 0; }
int nvmlDeviceGetCount_v2(unsigned int *count) { *count = 2; return 0; }

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **handle) {
    if (index >= 2) return 2;
    *handle = (void *)(unsigned long)(index + 10);
    return 0;
}

int nvmlDeviceGetName(void *handle, char *name, unsigned int length) {
    if (length < 96) return 7;
    snprintf(name, length, "Fake GPU %lu", (unsigned long)handle);
    return 0;
}

int nvmlDeviceGetUUID(void *handle, char *uuid, unsigned int length) {
    if (length < 96) return 7;
    snprintf(uuid, length, "GPU-fake-%lu", (unsigned long)handle);
    return 0;
}

int nvmlDeviceGetMemoryInfo(void *handle, memory_t *memory) {
    memory->total = (unsigned long long)(unsigned long)handle << 30;
    memory->free = 1;
    memory->used = 2;
    return MEMORY_RC;
}
"""


@pytest.fixture(scope="module")
def fake_nvml(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int, int], str]:
    """Builds a stand-in libnvidia-ml whose calls return the given codes."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build a fake NVML library")
    directory = tmp_path_factory.mktemp("nvml")
    source = directory / "fake_nvml.c"
    source.write_text(FAKE_NVML_C)

    def build(init_rc: int, memory_rc: int) -> str:
        library = directory / f"libfake-nvml-{init_rc}-{memory_rc}.so"
        if not library.exists():
            subprocess.run(
                [compiler, "-shared", "-fPIC", f"-DINIT_RC={init_rc}"]
                + [f"-DMEMORY_RC={memory_rc}", "-o", str(library), str(source)],
                check=True,
                capture_output=True,
            )
        return str(library)

    return build


def shutdowns(library: str) -> int:
    count: int = ctypes.CDLL(library).fake_shutdowns()
    return count


# Discovery


def test_discovers_devices_through_nvml(
    tmp_path: Path, fake_nvml: Callable[[int, int], str]
) -> None:
    library = fake_nvml(0, 0)
    smi = printing_smi(tmp_path, TWO_GPUS)

    devices = discover_gpus(nvidia_smi=str(smi), nvml_library=library)

    assert devices == [
        GpuDevice(0, "Fake GPU 10", "GPU-fake-10", 10 << 30),
        GpuDevice(1, "Fake GPU 11", "GPU-fake-11", 11 << 30),
    ]
    assert shutdowns(library) == 1
    assert not (tmp_path / "smi-args").exists()


def test_nvml_init_failure_falls_back_to_nvidia_smi(
    tmp_path: Path, fake_nvml: Callable[[int, int], str]
) -> None:
    library = fake_nvml(1, 0)
    smi = printing_smi(tmp_path, TWO_GPUS)

    devices = discover_gpus(nvidia_smi=str(smi), nvml_library=library)

    assert [device.name for device in devices] == [
        "NVIDIA H200",
        "NVIDIA A100-SXM4-80GB",
    ]
    assert shutdowns(library) == 0


def test_nvml_call_failure_shuts_nvml_down_and_falls_back(
    tmp_path: Path, fake_nvml: Callable[[int, int], str]
) -> None:
    library = fake_nvml(0, 3)
    smi = printing_smi(tmp_path, TWO_GPUS)

    devices = discover_gpus(nvidia_smi=str(smi), nvml_library=library)

    assert [device.index for device in devices] == [0, 1]
    assert devices[0].name == "NVIDIA H200"
    assert shutdowns(library) == 1


def test_discovers_devices_from_nvidia_smi_when_nvml_is_missing(
    tmp_path: Path,
) -> None:
    smi = printing_smi(tmp_path, TWO_GPUS)

    devices = discover_gpus(nvidia_smi=str(smi), nvml_library=NO_NVML)

    assert devices == [
        GpuDevice(
            0, "NVIDIA H200", "GPU-11111111-2222-3333-4444-555555555555", 143771 * MIB
        ),
        GpuDevice(
            1,
            "NVIDIA A100-SXM4-80GB",
            "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            81920 * MIB,
        ),
    ]
    assert (tmp_path / "smi-args").read_text().split() == [
        "--query-gpu=index,name,uuid,memory.total",
        "--format=csv,noheader,nounits",
    ]


def test_default_nvml_library_absent_here_still_falls_back(tmp_path: Path) -> None:
    try:
        ctypes.CDLL(NVML_LIBRARY)
    except OSError:
        pass
    else:
        pytest.skip("this host has a real NVML, so nvidia-smi is not asked")
    smi = printing_smi(tmp_path, TWO_GPUS)

    devices = discover_gpus(nvidia_smi=str(smi))

    assert [device.index for device in devices] == [0, 1]


def test_finds_nvidia_smi_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    printing_smi(tmp_path, TWO_GPUS)
    # The fake comes first; the rest of PATH gives its shell `cat`.
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")

    devices = discover_gpus(nvml_library=NO_NVML)

    assert [device.uuid for device in devices] == [
        "GPU-11111111-2222-3333-4444-555555555555",
        "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    ]


def test_no_nvidia_smi_on_path_means_no_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    assert discover_gpus(nvml_library=NO_NVML) == []


def test_missing_nvidia_smi_binary_means_no_gpus(tmp_path: Path) -> None:
    missing = tmp_path / "nvidia-smi"

    assert discover_gpus(nvidia_smi=str(missing), nvml_library=NO_NVML) == []


def test_failing_nvidia_smi_means_no_gpus(tmp_path: Path) -> None:
    smi = fake_smi(tmp_path, f"printf '{TWO_GPUS}'\necho 'driver gone' >&2\nexit 1\n")

    assert discover_gpus(nvidia_smi=str(smi), nvml_library=NO_NVML) == []


@pytest.mark.parametrize(
    "output",
    [
        "this is not csv\n",
        "zero, NVIDIA H200, GPU-1, 1024\n",
        "0, NVIDIA H200, GPU-1, lots\n",
        TWO_GPUS + "garbage\n",
    ],
)
def test_unparsable_nvidia_smi_output_means_no_gpus(
    tmp_path: Path, output: str
) -> None:
    smi = printing_smi(tmp_path, output)

    assert discover_gpus(nvidia_smi=str(smi), nvml_library=NO_NVML) == []


def test_nvidia_smi_that_hangs_means_no_gpus(tmp_path: Path) -> None:
    smi = fake_smi(tmp_path, "exec sleep 30\n")

    devices = discover_gpus(nvidia_smi=str(smi), nvml_library=NO_NVML, timeout_s=0.2)

    assert devices == []


def test_unreported_memory_and_comma_in_name_are_understood(tmp_path: Path) -> None:
    smi = printing_smi(tmp_path, "3, Tesla T4, rev B, GPU-t4, [N/A]\n")

    devices = discover_gpus(nvidia_smi=str(smi), nvml_library=NO_NVML)

    assert devices == [GpuDevice(3, "Tesla T4, rev B", "GPU-t4", None)]


def test_no_output_from_nvidia_smi_means_no_gpus(tmp_path: Path) -> None:
    smi = printing_smi(tmp_path, "")

    assert discover_gpus(nvidia_smi=str(smi), nvml_library=NO_NVML) == []


def test_discovery_logs_what_it_found_and_how(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    smi = printing_smi(tmp_path, TWO_GPUS)

    with caplog.at_level(logging.INFO, logger="stepforge.services.execution.gpus"):
        discover_gpus(nvidia_smi=str(smi), nvml_library=NO_NVML)

    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1
    assert "2 GPU(s) via nvidia-smi" in infos[0]
    assert "NVIDIA H200" in infos[0]


def test_gpus_env_lists_configured_indices_instead_of_discovering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smi = printing_smi(tmp_path, TWO_GPUS)
    monkeypatch.setenv(GPUS_ENV, " 0, 2 ")

    devices = discover_gpus(nvidia_smi=str(smi), nvml_library=NO_NVML)

    assert devices == [
        GpuDevice(0, "configured", "", None),
        GpuDevice(2, "configured", "", None),
    ]
    assert not (tmp_path / "smi-args").exists()


@pytest.mark.parametrize("value", ["", "none", " NONE "])
def test_gpus_env_none_or_empty_means_no_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    smi = printing_smi(tmp_path, TWO_GPUS)
    monkeypatch.setenv(GPUS_ENV, value)

    assert discover_gpus(nvidia_smi=str(smi), nvml_library=NO_NVML) == []


@pytest.mark.parametrize("value", ["0,x", "0,,1", "-1", "1,1"])
def test_malformed_gpus_env_is_rejected_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(GPUS_ENV, value)

    with pytest.raises(ValueError, match=GPUS_ENV):
        discover_gpus(nvml_library=NO_NVML)


# Allocation


class Waiter:
    """Runs `acquire` on a thread and keeps what it returned."""

    def __init__(
        self,
        allocator: GpuAllocator,
        *,
        cancelled: threading.Event | None = None,
        timeout_s: float | None = None,
        then: Callable[[int | None], None] | None = None,
    ) -> None:
        self.result: int | None = None
        self.raised: BaseException | None = None

        def run() -> None:
            try:
                self.result = allocator.acquire(
                    cancelled=cancelled, timeout_s=timeout_s
                )
                if then is not None:
                    then(self.result)
            except BaseException as exc:
                self.raised = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def join(self) -> int | None:
        self._thread.join(JOIN_S)
        assert not self._thread.is_alive(), "acquire did not return"
        assert self.raised is None
        return self.result

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()


def wait_for_queue(allocator: GpuAllocator, length: int) -> None:
    deadline = time.monotonic() + JOIN_S
    while allocator.waiting != length:
        assert time.monotonic() < deadline, f"queue never reached {length}"
        time.sleep(0.005)


def test_hands_out_distinct_devices() -> None:
    allocator = GpuAllocator([2, 0, 1])

    taken = {allocator.acquire(timeout_s=1) for _ in range(3)}

    assert taken == {0, 1, 2}
    assert allocator.free_count == 0
    assert allocator.total == 3
    assert allocator.try_acquire() is None


def test_acquire_blocks_while_all_busy_and_wakes_on_release() -> None:
    allocator = GpuAllocator([5])
    held = allocator.acquire()

    waiter = Waiter(allocator)
    wait_for_queue(allocator, 1)
    assert not waiter.done

    assert held == 5
    allocator.release(held)

    assert waiter.join() == 5
    assert allocator.free_count == 0
    assert allocator.waiting == 0


def test_waiters_get_devices_in_arrival_order() -> None:
    allocator = GpuAllocator([0])
    held = allocator.acquire()
    assert held is not None
    order: list[str] = []

    def record_then_release(name: str) -> Callable[[int | None], None]:
        def then(index: int | None) -> None:
            assert index is not None
            order.append(name)
            allocator.release(index)

        return then

    waiters = []
    for name in ["first", "second", "third"]:
        waiters.append(Waiter(allocator, then=record_then_release(name)))
        wait_for_queue(allocator, len(waiters))

    allocator.release(held)

    assert [waiter.join() for waiter in waiters] == [0, 0, 0]
    assert order == ["first", "second", "third"]
    assert allocator.free_count == 1


def test_cancel_wakes_waiter_and_lets_the_next_one_through() -> None:
    allocator = GpuAllocator([0])
    held = allocator.acquire()
    assert held is not None
    cancel = threading.Event()
    cancelled_waiter = Waiter(allocator, cancelled=cancel)
    wait_for_queue(allocator, 1)
    next_waiter = Waiter(allocator)
    wait_for_queue(allocator, 2)

    cancel.set()

    assert cancelled_waiter.join() is None
    assert allocator.waiting == 1
    allocator.release(held)
    assert next_waiter.join() == 0


def test_already_cancelled_acquire_takes_nothing() -> None:
    allocator = GpuAllocator([0])
    cancel = threading.Event()
    cancel.set()

    assert allocator.acquire(cancelled=cancel) is None
    assert allocator.free_count == 1
    assert allocator.waiting == 0


def test_timeout_returns_none_and_leaves_the_queue() -> None:
    allocator = GpuAllocator([0])
    held = allocator.acquire()
    assert held is not None

    assert allocator.acquire(timeout_s=0.05) is None
    assert allocator.waiting == 0

    allocator.release(held)
    assert allocator.try_acquire() == 0


def test_timed_out_waiter_does_not_hold_up_the_one_behind() -> None:
    allocator = GpuAllocator([0])
    held = allocator.acquire()
    assert held is not None
    impatient = Waiter(allocator, timeout_s=0.1)
    wait_for_queue(allocator, 1)
    patient = Waiter(allocator)

    assert impatient.join() is None
    allocator.release(held)

    assert patient.join() == 0


def test_releasing_a_device_twice_raises() -> None:
    allocator = GpuAllocator([0, 1])
    index = allocator.acquire()
    assert index is not None
    allocator.release(index)

    with pytest.raises(ValueError, match="not held"):
        allocator.release(index)
    assert allocator.free_count == 2


def test_releasing_an_unknown_device_raises() -> None:
    allocator = GpuAllocator([0])

    with pytest.raises(ValueError, match="GPU 7 is not held"):
        allocator.release(7)


def test_try_acquire_takes_a_free_device_when_nobody_waits() -> None:
    allocator = GpuAllocator([3, 4])

    assert allocator.try_acquire() == 3
    assert allocator.try_acquire() == 4
    assert allocator.try_acquire() is None


def test_try_acquire_does_not_jump_ahead_of_waiters() -> None:
    allocator = GpuAllocator([0])
    held = allocator.acquire()
    assert held is not None
    waiter = Waiter(allocator)
    wait_for_queue(allocator, 1)

    allocator.release(held)
    jumped = allocator.try_acquire()

    assert jumped is None
    assert waiter.join() == 0


def test_allocator_without_devices_refuses_to_wait() -> None:
    allocator = GpuAllocator([])

    assert not allocator.has_devices
    assert allocator.total == 0
    with pytest.raises(RuntimeError, match="no GPU"):
        allocator.acquire()


@pytest.mark.parametrize("devices", [[0, 0], [-1], [True]])
def test_bad_device_lists_are_rejected(devices: list[int]) -> None:
    with pytest.raises(ValueError, match="devices"):
        GpuAllocator(devices)


def test_negative_timeout_is_rejected() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        GpuAllocator([0]).acquire(timeout_s=-1)


def test_cuda_visible_devices_exposes_one_device_or_none() -> None:
    assert cuda_visible_devices(3) == "3"
    assert cuda_visible_devices(0) == "0"
    assert cuda_visible_devices(None) == ""
    with pytest.raises(ValueError, match="index"):
        cuda_visible_devices(-1)
