"""Step code the end-to-end tests create steps from, one function per behaviour."""

from __future__ import annotations

from pathlib import Path

STEP_CODE = """\
import os
import subprocess
import sys
import time


def echo(text, count=1):
    print("echo says", text)
    print("to stderr", file=sys.stderr)
    return {"echoed": text * int(count)}


def seed_example(input1, input2, input3):
    data = input2.read()
    print("input1", input1, "bytes", len(data), "input3", input3)
    return {"prediction": data.upper()}


def defaults(text=None, blob=None, number=None):
    return {"text": text, "blob_size": len(blob.read()), "number": number}


def outputs_as(kind):
    if kind == "bytes":
        return {"file": b"from bytes"}
    if kind == "file object":
        return {"file": open(__file__, "rb")}
    if kind == "path":
        with open("written.txt", "wb") as out:
            out.write(b"from a path")
        return {"file": "written.txt"}
    if kind == "missing":
        return {}
    if kind == "undeclared":
        return {"file": b"x", "surprise": 1}
    if kind == "wrong type":
        return {"file": 12}
    raise ValueError("unknown kind " + kind)


def fails(message):
    raise RuntimeError(message)


def sleeps(seconds, marker):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(marker, "w") as out:
        out.write(str(child.pid))
    for index in range(int(seconds * 10)):
        print("tick", index, flush=True)
        time.sleep(0.1)
    return {}


def environment():
    cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
    return {"variables": sorted(os.environ), "cuda": cuda}


def peek(paths):
    seen = {}
    for path in paths:
        try:
            if os.path.isdir(path):
                seen[path] = sorted(os.listdir(path))
            else:
                with open(path, "rb") as file:
                    seen[path] = len(file.read())
        except OSError as error:
            seen[path] = type(error).__name__
    return {"seen": seen}


def capabilities():
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {"effective": fields["CapEff"].strip(), "bounding": fields["CapBnd"].strip()}


def passthrough(data):
    return {"data": data}


def grow(size):
    return {"data": "x" * int(size)}


def stamp(label):
    started = time.time()
    time.sleep(0.2)
    return {"label": label, "started": started, "ended": time.time()}


def floods(size, marker):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(marker, "w") as out:
        out.write(str(child.pid))
    line = "x" * 1023
    for _ in range(int(size) // 1024):
        print(line)
    time.sleep(600)
    return {}


def allocates(megabytes):
    held = bytearray(int(megabytes) * 1024 * 1024)
    return {"size": len(held)}


def spins():
    while True:
        pass


def rlimits():
    import resource

    return {
        "memory": resource.getrlimit(resource.RLIMIT_AS)[0],
        "open_files": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }
"""


def write_step_code(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "steps.py").write_text(STEP_CODE)
    return folder
