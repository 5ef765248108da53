"""The step image contract: where the build puts things and the Job finds them.

The Kaniko builder writes images to it and the execution backend runs them by
it, so both read these names from here.
"""

from __future__ import annotations

# Who the step runs as: not root, and the same in the image and the pod.
STEP_UID = 10001
# The step's code, also the working directory.
CODE_DIR = "/stepforge/code"
# The pod's writable folder: inputs, outputs, HOME and TMPDIR.
RUN_DIR = "/stepforge/run"
# The step's environment, whose `bin` comes first on PATH.
VENV = "/stepforge/venv"
# The stdlib-only launcher the execution Job runs, beside runner.py.
POD_ENTRY = "/stepforge/pod_entry.py"
