"""The labels every Job the suite creates carries, so it can find them again."""

from __future__ import annotations

import hashlib
import re

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "stepforge"
COMPONENT = "app.kubernetes.io/component"
ENVIRONMENT = "stepforge.dev/environment"
PIPELINE = "stepforge.dev/pipeline"
EXECUTION = "stepforge.dev/execution"
STEP = "stepforge.dev/step"

_NOT_IN_VALUE = re.compile(r"[^A-Za-z0-9_.-]+")


def label_value(text: str) -> str:
    """`text` as a valid label value: at most 63 characters of [A-Za-z0-9_.-],
    starting and ending with a letter or digit. Names that had to be changed
    keep a hash of the original, so two of them never collide."""
    cleaned = _NOT_IN_VALUE.sub("-", text).strip("-_.")
    if cleaned == text and len(text) <= 63:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{cleaned[:52].rstrip('-_.')}-{digest}".lstrip("-_.")


def selector(component: str) -> str:
    """The label selector of the suite's Jobs of one component."""
    return f"{MANAGED_BY}={MANAGER},{COMPONENT}={component}"
