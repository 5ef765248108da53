"""Stepforge SDK: turn a Python function into a typed, reusable pipeline step."""

from stepforge._output_file import ExecutionOutputFile
from stepforge._sdk import StepforgeSdk
from stepforge._step_parameter import STEP_PARAMETER
from stepforge.errors import (
    AlreadyExistsError,
    ExecutionFailedError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    StepBuildError,
    StepCreationTimeoutError,
    StepforgeError,
)
from stepforge.io import INPUT_OUTPUT_TYPES, Input, Output

__all__ = [
    "INPUT_OUTPUT_TYPES",
    "STEP_PARAMETER",
    "AlreadyExistsError",
    "ExecutionFailedError",
    "ExecutionOutputFile",
    "FailedPreconditionError",
    "Input",
    "InvalidArgumentError",
    "NotFoundError",
    "Output",
    "StepBuildError",
    "StepCreationTimeoutError",
    "StepforgeError",
    "StepforgeSdk",
]
