"""`stepforge demo`: start the suite, create the documentation's example step
with the SDK exactly as a user would, and show what comes back."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from stepforge import Input, Output, StepforgeSdk
from stepforge.services.config import ServerConfig
from stepforge.services.core.tls import TlsSettings, ensure_self_signed
from stepforge.services.suite import read_env_file, start

EXAMPLE_FUNCTION = """\
def entryStep(dataX_input):
    # Some machine learning code
    result_output = {"received": dataX_input}
    return {"result_output": result_output}
"""


def run_demo(data_dir: Path | None, port: int) -> int:
    """Runs the demo against a fresh suite in `data_dir` (a temporary one when
    None); returns the exit status."""
    with tempfile.TemporaryDirectory(prefix="stepforge-demo-") as scratch:
        data = data_dir or Path(scratch) / "data"
        folder = Path(scratch) / "my" / "folder"
        (folder / "src").mkdir(parents=True)
        (folder / "src" / "my_entry_function_step.py").write_text(EXAMPLE_FUNCTION)
        (folder / "requirements.txt").write_text("")

        tls = TlsSettings(ensure_self_signed(data / "tls"))
        suite = start(ServerConfig(data_dir=data, port=port, tls=tls))
        try:
            assert suite.env_file is not None
            values = read_env_file(suite.env_file)
            print(f"suite running on {suite.url} with data in {data}")
            with StepforgeSdk(
                values["STEPFORGE_ENVIRONMENT_URL"],
                values["STEPFORGE_SDK_TOKEN"],
                ca_cert=values["STEPFORGE_CA_CERT"],
            ) as sdk:
                step = sdk.create_step(
                    function_path="src/my_entry_function_step.py",
                    function_name="entryStep",
                    container_config={"local_folder": str(folder)},
                    inputs=[Input(name="dataX_input", data_type="json")],
                    outputs=[Output(name="result_output", data_type="json")],
                )
                print("create_step returned:")
                print(json.dumps(step, indent=2))
                print("build log:")
                print(sdk.get_step_build_log("entryStep"))
                status = step["creation_info"]["status"]
        finally:
            suite.stop()
    print(f"step entryStep is {status}. Run `stepforge up` to keep a suite running.")
    return 0 if status == "Ready" else 1
