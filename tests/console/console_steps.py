"""The steps the console's tests show: one with hostile text everywhere it
may appear, one that returns a file, and one that waits for the test."""

from __future__ import annotations

from pathlib import Path

from stepforge import Input, Output, StepforgeSdk

HOSTILE = "<script>alert('pwned')</script>"
ESCAPED_HOSTILE = "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;"
# Bigger than one 1 MiB chunk, so a download is several of them.
FILE_OUTPUT = bytes(range(256)) * 10_000

STEP_CODE = f"""\
import os
import sys
import time

HOSTILE = {HOSTILE!r}


def hostile(text):
    print("stdout says", HOSTILE, flush=True)
    print("stderr says", text, file=sys.stderr, flush=True)
    return {{"echo": text}}


def produces(size):
    print("producing", size, "bytes", flush=True)
    return {{"blob": bytes(range(256)) * (int(size) // 256), "size": int(size)}}


def waits(marker, label="console"):
    print("waiting for", os.path.basename(marker), flush=True)
    while not os.path.exists(marker):
        time.sleep(0.05)
    print("marker seen:", label, flush=True)
    while not os.path.exists(marker + ".done"):
        time.sleep(0.05)
    return {{"report": ("report of " + label).encode(), "label": label}}
"""


def write_step_code(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "console_steps.py").write_text(STEP_CODE)
    return folder


def create_hostile_step(sdk: StepforgeSdk, folder: Path) -> None:
    """Step and pipeline `hostile`, whose description, default, log lines
    and output all carry markup."""
    sdk.create_step(
        step_name="hostile",
        function_path="console_steps.py",
        function_name="hostile",
        description=f"Describes itself as {HOSTILE}",
        container_config={"local_folder": str(folder)},
        inputs=[Input("text", "string", default_value=HOSTILE)],
        outputs=[Output("echo", "string", description=HOSTILE)],
    )
    sdk.create_pipeline(pipeline_name="hostile-pipeline", step_name="hostile")


def create_producing_step(sdk: StepforgeSdk, folder: Path) -> None:
    """Step and pipeline `produces`, which returns a FILE and a number."""
    sdk.create_step(
        step_name="produces",
        function_path="console_steps.py",
        function_name="produces",
        description="Writes a file of the size asked for.",
        container_config={"local_folder": str(folder)},
        inputs=[Input("size", "number", is_required=True)],
        outputs=[Output("blob", "file"), Output("size", "number")],
    )
    sdk.create_pipeline(pipeline_name="produces-pipeline", step_name="produces")


def create_waiting_step(sdk: StepforgeSdk, folder: Path) -> None:
    """Step and pipeline `waits`, which logs a line, waits for a marker
    file, logs another, then waits for `<marker>.done` before it returns."""
    sdk.create_step(
        step_name="waits",
        function_path="console_steps.py",
        function_name="waits",
        description="Waits for the test, so it can watch a run live.",
        container_config={"local_folder": str(folder)},
        inputs=[
            Input("marker", "string", is_required=True),
            Input("label", "string", default_value="console"),
        ],
        outputs=[Output("report", "file"), Output("label", "string")],
    )
    sdk.create_pipeline(pipeline_name="waits-pipeline", step_name="waits")
