"""A container's environment as the kubelet resolves it: values, field
references and `$(VAR)` expansion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .meta import Obj, clone

# The field references the fake resolves; others leave the variable unset.
_FIELD_PATHS = {
    "metadata.name": lambda pod: pod["metadata"]["name"],
    "metadata.namespace": lambda pod: pod["metadata"].get("namespace", ""),
    "metadata.uid": lambda pod: pod["metadata"].get("uid", ""),
    "spec.nodeName": lambda pod: pod["spec"].get("nodeName", ""),
}


def resolve_container(
    container: Mapping[str, Any], pod: Obj, extra_env: Mapping[str, str]
) -> Obj:
    """`container` with env as plain name/value pairs (plus `extra_env`, as a
    device plugin adds) and `$(VAR)` references in env, command and args
    expanded."""
    resolved = clone(dict(container))
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        value = _value(item, pod, env)
        if value is not None:
            env[item["name"]] = value
    env.update(extra_env)
    resolved["env"] = [{"name": name, "value": value} for name, value in env.items()]
    resolved.pop("envFrom", None)
    for field in ("command", "args"):
        if field in resolved:
            resolved[field] = [expand(str(arg), env) for arg in resolved[field]]
    return resolved


def expand(text: str, env: Mapping[str, str]) -> str:
    """`$(NAME)` replaced by NAME's value when defined, `$$` by `$`."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        following = text[index + 1 : index + 2]
        if char == "$" and following == "$":
            out.append("$")
            index += 2
            continue
        if char == "$" and following == "(":
            end = text.find(")", index + 2)
            if end != -1:
                name = text[index + 2 : end]
                out.append(env.get(name, text[index : end + 1]))
                index = end + 1
                continue
        out.append(char)
        index += 1
    return "".join(out)


def _value(item: Mapping[str, Any], pod: Obj, env: Mapping[str, str]) -> str | None:
    source = item.get("valueFrom")
    if not source:
        return expand(str(item.get("value") or ""), env)
    field_path = (source.get("fieldRef") or {}).get("fieldPath")
    resolver = _FIELD_PATHS.get(field_path or "")
    return str(resolver(pod)) if resolver else None
