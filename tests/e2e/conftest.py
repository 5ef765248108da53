from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.suite import SuiteUnderTest, running_suite

ENTRY_FUNCTION = """\
def entryStep(dataX_input, dataY_input=None):
    return {"result_output": dataX_input}
"""


@pytest.fixture(params=["local", "s3"])
def suite(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SuiteUnderTest]:
    """The whole suite, once with each object store."""
    url = None
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_server")
        url = s3.url(f"stepforge-{uuid.uuid4().hex[:12]}")
    with running_suite(tmp_path / "data", url) as running:
        yield running


@pytest.fixture
def local_suite(tmp_path: Path) -> Iterator[SuiteUnderTest]:
    """The whole suite with the embedded defaults only."""
    with running_suite(tmp_path / "data") as running:
        yield running


@pytest.fixture
def code_folder(tmp_path: Path) -> Path:
    """The folder of the product document's example: an entry file under src/."""
    folder = tmp_path / "code"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "my_entry_function_step.py").write_text(ENTRY_FUNCTION)
    (folder / "requirements.txt").write_text("")
    (folder / "notes.md").write_text("not code\n")
    return folder
