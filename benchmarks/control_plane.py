"""Control-plane throughput and latency, measured next to a floor in the same
run.

The suite runs as `stepforge up` in its own process, with --steps tiny steps
created first. Clients call the registry's unary GetStep (one step) and
ListSteps (all of them, one page) through the generated stubs with the
bearer token, as fast as they can for --seconds, at each level of
concurrent clients: one thread per client, each with its own channel and
its own connection. The floor is a bare grpcio server in another process
(benchmarks/bare_server.py), with as many handler threads as the suite's and
the same transport (TLS with the suite's own certificate, as `stepforge up`
serves by default), that answers the same RPC paths with the bytes the suite
returned, captured first: same response sizes, no token check, no lookup.

Throughput is calls per second over a round, the median of --rounds rounds;
latencies are those of every call of every round. Suite and floor rounds
alternate. The CPU time each server process spends per call (all its
threads, user and system) is recorded too, to tell the server's own cost
from the clients' and the machine's.

Usage: python benchmarks/control_plane.py [--rounds N] [--seconds S]
    [--clients 1,8,64] [--steps N] [--quick] [--results PATH]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
from google.protobuf.message import Message
from harness import (
    Column,
    Suite,
    command_line,
    compare,
    parse_options,
    percentile,
    report,
    running_suite,
)

from stepforge import Input, Output
from stepforge.v1 import registry_pb2, registry_pb2_grpc

DEFAULTS = {"rounds": 5, "seconds": 2.0, "clients": "1,8,64", "steps": 20}
QUICK = {"rounds": 1, "seconds": 0.3, "clients": "1,8", "steps": 20}

SERVICE = "/stepforge.v1.RegistryService"
TINY_STEP = "def tiny(x):\n    return {'y': x}\n"
BARE_SERVER = Path(__file__).with_name("bare_server.py")
# Where `stepforge up` keeps the certificate it serves TLS with, under its
# data folder; the bare server presents the same one.
SERVER_CERT = "server.pem"
SERVER_KEY = "server-key.pem"

COLUMNS = (
    Column("case", "case", "text"),
    Column("calls/s", "suite_calls_per_s", "/s"),
    Column("bare calls/s", "floor_calls_per_s", "/s"),
    Column("throughput ratio", "throughput_ratio", "x"),
    Column("median", "suite_median_s", "s"),
    Column("p99", "suite_p99_s", "s"),
    Column("bare median", "floor_median_s", "s"),
    Column("bare p99", "floor_p99_s", "s"),
    Column("server CPU/call", "suite_server_cpu_per_call_s", "s"),
    Column("bare CPU/call", "floor_server_cpu_per_call_s", "s"),
)


@dataclass(frozen=True)
class Server:
    """Where a server under load listens, and its process."""

    address: str
    pid: int


@dataclass(frozen=True)
class Load:
    """What the clients of one round did: every call's latency, the time from
    their start until the last call ended, and the CPU time the server and
    the clients' process spent meanwhile."""

    latencies: list[float]
    elapsed_s: float
    server_cpu_s: float
    client_cpu_s: float

    @property
    def calls_per_s(self) -> float:
        return len(self.latencies) / self.elapsed_s

    @property
    def server_cpu_per_call_s(self) -> float:
        return self.server_cpu_s / len(self.latencies)

    @property
    def client_cpu_per_call_s(self) -> float:
        return self.client_cpu_s / len(self.latencies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, help="rounds per level (default 5)")
    parser.add_argument("--seconds", type=float, help="length of a round (default 2)")
    parser.add_argument("--clients", help="concurrency levels (default 1,8,64)")
    parser.add_argument("--steps", type=int, help="steps ListSteps returns (20)")
    args = parse_options(parser, argv, DEFAULTS, QUICK)
    levels = _levels(args.clients)

    with tempfile.TemporaryDirectory(prefix="stepforge-bench-") as scratch:
        root = Path(scratch)
        with running_suite(root / "data") as suite:
            transport = suite.transport
            _create_steps(suite, root / "code", args.steps)
            calls: dict[str, Message] = {
                "GetStep": registry_pb2.GetStepRequest(name="steps/tiny-00"),
                "ListSteps": registry_pb2.ListStepsRequest(),
            }
            answers = _capture(suite, calls)
            listed = registry_pb2.ListStepsResponse.FromString(answers["ListSteps"])
            assert len(listed.steps) == args.steps, len(listed.steps)
            served = Server(suite.target, suite.pid)
            with _bare_server(suite, answers, root) as bare:
                rows = [
                    _row(suite, served, bare, method, request, clients, args)
                    for method, request in calls.items()
                    for clients in levels
                ]

    command = command_line("control_plane.py", args, list(DEFAULTS))
    table = report(
        "control_plane",
        command,
        rows,
        columns=COLUMNS,
        results=args.results,
        transport=transport,
    )
    print(table)
    return 0


def _row(
    suite: Suite,
    served: Server,
    bare: Server,
    method: str,
    request: Message,
    clients: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    suite_loads, bare_loads = [], []
    for _ in range(args.rounds):
        suite_loads.append(_load(suite, served, method, request, clients, args))
        bare_loads.append(_load(suite, bare, method, request, clients, args))
    suite_latencies = [t for load in suite_loads for t in load.latencies]
    bare_latencies = [t for load in bare_loads for t in load.latencies]
    noun = "client" if clients == 1 else "clients"
    row = compare(f"{method}, {clients} {noun}", suite_latencies, bare_latencies)
    suite_rate = statistics.median(load.calls_per_s for load in suite_loads)
    bare_rate = statistics.median(load.calls_per_s for load in bare_loads)
    row.update(
        clients=clients,
        suite_calls=len(suite_latencies),
        floor_calls=len(bare_latencies),
        suite_calls_per_s=round(suite_rate, 1),
        floor_calls_per_s=round(bare_rate, 1),
        throughput_ratio=round(suite_rate / bare_rate, 2),
        suite_p99_s=round(percentile(suite_latencies, 0.99), 5),
        floor_p99_s=round(percentile(bare_latencies, 0.99), 5),
        suite_server_cpu_per_call_s=_median_cpu(suite_loads, "server"),
        floor_server_cpu_per_call_s=_median_cpu(bare_loads, "server"),
        suite_client_cpu_per_call_s=_median_cpu(suite_loads, "client"),
        floor_client_cpu_per_call_s=_median_cpu(bare_loads, "client"),
    )
    return row


def _median_cpu(loads: list[Load], side: str) -> float:
    per_call: list[float] = [getattr(load, f"{side}_cpu_per_call_s") for load in loads]
    return round(statistics.median(per_call), 6)


def _load(
    suite: Suite,
    server: Server,
    method: str,
    request: Message,
    clients: int,
    args: argparse.Namespace,
) -> Load:
    """`clients` threads calling `method` of `server` for `args.seconds`,
    over the suite's transport and with its token."""
    metadata = suite.metadata
    server_process, client_process = psutil.Process(server.pid), psutil.Process()
    # A local subchannel pool gives each channel its own connection, as
    # separate client processes would have.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [suite.channel(server.address, options) for _ in range(clients)]
    try:
        callers = [
            getattr(registry_pb2_grpc.RegistryServiceStub(channel), method)
            for channel in channels
        ]
        for call in callers:
            call(request, metadata=metadata)  # connects before the clock starts
        latencies: list[list[float]] = [[] for _ in callers]
        start = threading.Barrier(clients + 1)
        deadline = [0.0]

        def client(index: int) -> None:
            call, mine = callers[index], latencies[index]
            start.wait()
            while time.perf_counter() < deadline[0]:
                began = time.perf_counter()
                call(request, metadata=metadata)
                mine.append(time.perf_counter() - began)

        threads = [
            threading.Thread(target=client, args=(index,)) for index in range(clients)
        ]
        for thread in threads:
            thread.start()
        server_cpu, client_cpu = _cpu_s(server_process), _cpu_s(client_process)
        started = time.perf_counter()
        deadline[0] = started + args.seconds
        start.wait()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        server_cpu = _cpu_s(server_process) - server_cpu
        client_cpu = _cpu_s(client_process) - client_cpu
    finally:
        for channel in channels:
            channel.close()
    done = [latency for mine in latencies for latency in mine]
    if len(done) == 0:
        raise RuntimeError(
            f"no {method} call to {server.address} ended in {args.seconds} s"
        )
    return Load(done, elapsed, server_cpu, client_cpu)


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _create_steps(suite: Suite, code: Path, count: int) -> None:
    code.mkdir()
    (code / "tiny.py").write_text(TINY_STEP)
    with suite.sdk() as sdk:
        for index in range(count):
            sdk.create_step(
                step_name=f"tiny-{index:02d}",
                function_path="tiny.py",
                function_name="tiny",
                container_config={"local_folder": str(code)},
                inputs=[Input("x", "number")],
                outputs=[Output("y", "number")],
            )


def _capture(suite: Suite, calls: dict[str, Message]) -> dict[str, bytes]:
    """The serialized response the suite gives to each call."""
    with suite.channel() as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        answers = {}
        for method, request in calls.items():
            response = getattr(stub, method)(request, metadata=suite.metadata)
            answers[method] = response.SerializeToString()
        return answers


@contextmanager
def _bare_server(
    suite: Suite, answers: dict[str, bytes], folder: Path
) -> Iterator[Server]:
    """The floor server in its own process, serving TLS with the suite's own
    certificate when the suite does; yields its address."""
    arguments = []
    if suite.ca_cert is not None:
        tls = suite.data_dir / "tls"
        arguments += ["--tls-cert", str(tls / SERVER_CERT)]
        arguments += ["--tls-key", str(tls / SERVER_KEY)]
    for method, response in answers.items():
        path = folder / f"{method}.bin"
        path.write_bytes(response)
        arguments.append(f"{SERVICE}/{method}={path}")
    process = subprocess.Popen(
        [sys.executable, str(BARE_SERVER), *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        key, _, port = process.stdout.readline().strip().partition("=")
        if key != "PORT" or not port.isdigit():
            raise RuntimeError("the bare server exited before it listened")
        yield Server(f"127.0.0.1:{port}", process.pid)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _levels(text: str) -> list[int]:
    levels = []
    for part in text.split(","):
        if not part.strip().isdigit() or int(part) < 1:
            raise SystemExit(
                f"--clients {text!r}: must be positive whole numbers, comma separated"
            )
        levels.append(int(part))
    return levels


if __name__ == "__main__":
    sys.exit(main())
