"""The languages steps can be built for: data, so adding a version is one line."""

from __future__ import annotations

import re
from dataclasses import dataclass

_CPU_PATTERN = re.compile(r"^python:(3\.\d+)-slim$")
_GPU_PATTERN = re.compile(r"^python-cuda:(3\.\d+)-(\d+\.\d+)$")


@dataclass(frozen=True)
class Language:
    """One accepted value of `container_config.language`."""

    name: str
    python_version: str
    cuda_version: str | None = None

    @property
    def needs_gpu(self) -> bool:
        return self.cuda_version is not None


def _cpu(*versions: str) -> list[Language]:
    return [Language(f"python:{v}-slim", v) for v in versions]


def _gpu(cuda: str, *versions: str) -> list[Language]:
    return [Language(f"python-cuda:{v}-{cuda}", v, cuda) for v in versions]


SUPPORTED_LANGUAGES: tuple[Language, ...] = tuple(
    _cpu("3.8", "3.9", "3.10", "3.11", "3.12", "3.13")
    + _gpu("11.8", "3.8", "3.9", "3.10", "3.11")
    + _gpu("12.1", "3.9", "3.10", "3.11")
    + _gpu("12.4", "3.10", "3.11", "3.12")
    + _gpu("12.8", "3.10", "3.11", "3.12", "3.13")
)

_BY_NAME = {language.name: language for language in SUPPORTED_LANGUAGES}


def find_language(name: str) -> Language | None:
    """Returns the supported language called `name`, or None."""
    return _BY_NAME.get(name)


def describe_unsupported(name: str) -> str:
    """Explains why `name` is not accepted, listing what is."""
    if _CPU_PATTERN.match(name) or _GPU_PATTERN.match(name):
        reason = "is not a supported version"
    else:
        reason = "must look like python:3.X-slim or python-cuda:3.X-Y.Z"
    accepted = ", ".join(language.name for language in SUPPORTED_LANGUAGES)
    return f"{name!r} {reason}; supported: {accepted}"
