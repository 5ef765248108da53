"""The resource kinds the fake API server serves, and where their paths are."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One served resource kind."""

    name: str
    plural: str
    api_version: str
    namespaced: bool
    # Whether clients may create and delete it (nodes belong to the fake).
    writable: bool = True

    @property
    def group(self) -> str:
        """The API group, "" for the core group."""
        group, _, _ = self.api_version.rpartition("/")
        return group

    @property
    def list_kind(self) -> str:
        return f"{self.name}List"


JOB = Kind("Job", "jobs", "batch/v1", namespaced=True)
POD = Kind("Pod", "pods", "v1", namespaced=True)
SECRET = Kind("Secret", "secrets", "v1", namespaced=True)
CONFIG_MAP = Kind("ConfigMap", "configmaps", "v1", namespaced=True)
# Served so that clients may list them; the fake records no events itself.
EVENT = Kind("Event", "events", "v1", namespaced=True)
NAMESPACE = Kind("Namespace", "namespaces", "v1", namespaced=False)
NODE = Kind("Node", "nodes", "v1", namespaced=False, writable=False)

KINDS = (JOB, POD, SECRET, CONFIG_MAP, EVENT, NAMESPACE, NODE)
_BY_PATH = {(kind.api_version, kind.plural): kind for kind in KINDS}
_BY_NAME = {kind.name: kind for kind in KINDS}


def kind_at(api_version: str, plural: str) -> Kind | None:
    """The kind served at `/api(s)/<api_version>/.../<plural>`, if any."""
    return _BY_PATH.get((api_version, plural))


def kind_named(name: str) -> Kind:
    """The kind called `name` ("Job", "Pod", ...); ValueError if not served."""
    try:
        return _BY_NAME[name]
    except KeyError:
        served = ", ".join(sorted(_BY_NAME))
        raise ValueError(
            f"kind {name!r} is not served by the fake cluster; it serves {served}"
        ) from None
