"""What a builder is given and what it answers, whatever backend builds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from stepforge.services.build.build_log import BuildLog
from stepforge.services.core.languages import Language


@dataclass(frozen=True)
class BuildSpec:
    """A step's code and its resolved container settings."""

    step_name: str
    archive_path: Path
    archive_sha256: str
    function_path: str
    function_name: str
    input_names: tuple[str, ...]
    language: Language
    requirements_path: str | None = None
    system_dependencies: tuple[str, ...] = field(default_factory=tuple)
    dockerfile_path: str | None = None


@dataclass(frozen=True)
class BuildOutcome:
    """The end of a build: ready with a runtime, or failed with one reason."""

    ready: bool
    failure_reason: str = ""
    # What the registry records and executions run: the environment's folder
    # name for the local builder, the image reference for the image builder.
    runtime_id: str = ""
    runtime_path: Path | None = None
    code_path: Path | None = None


class BuildInterrupted(Exception):
    """The service is stopping: the build is neither ready nor failed, and
    resumes when the service starts again."""


class Builder(Protocol):
    def build(self, spec: BuildSpec, log: BuildLog) -> BuildOutcome:
        """Builds `spec`, writing progress to `log`. Never raises for a bad
        step; may raise BuildInterrupted while the service stops."""
        ...
