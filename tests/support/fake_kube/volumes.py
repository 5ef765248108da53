"""A pod's volumes as host folders, and each container's mounts of them."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .meta import Obj
from .state import ObjectStore


class VolumeNotReady(Exception):
    """A volume's source is missing for now (a Secret not yet created)."""


class VolumeNotEmulated(Exception):
    """A volume type the fake does not emulate."""


def prepare_volumes(pod: Obj, pod_dir: Path, store: ObjectStore) -> dict[str, Path]:
    """Host folders backing the pod's volumes, by volume name."""
    paths: dict[str, Path] = {}
    namespace = pod["metadata"]["namespace"]
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        folder = pod_dir / "volumes" / name
        if "emptyDir" in volume:
            folder.mkdir(parents=True, exist_ok=True)
        elif "hostPath" in volume:
            folder = Path(volume["hostPath"]["path"])
            if volume["hostPath"].get("type") == "DirectoryOrCreate":
                folder.mkdir(parents=True, exist_ok=True)
        elif "secret" in volume:
            source = volume["secret"]
            secret = _source(store, "Secret", namespace, source.get("secretName"))
            files = {k: base64.b64decode(v) for k, v in _data(secret, "data").items()}
            _write(folder, files, source, secret is None, name)
        elif "configMap" in volume:
            source = volume["configMap"]
            config = _source(store, "ConfigMap", namespace, source.get("name"))
            files = {k: v.encode() for k, v in _data(config, "data").items()}
            binary = _data(config, "binaryData").items()
            files.update({k: base64.b64decode(v) for k, v in binary})
            _write(folder, files, source, config is None, name)
        else:
            kinds = ", ".join(key for key in volume if key != "name")
            raise VolumeNotEmulated(
                f"volume {name!r} is of type {kinds}; the fake cluster emulates "
                "emptyDir, hostPath, secret and configMap volumes"
            )
        paths[name] = folder
    return paths


def container_mounts(
    container: Mapping[str, Any], volumes: Mapping[str, Path]
) -> dict[str, Path]:
    """mountPath -> host path, for each of the container's volumeMounts."""
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        host = volumes[mount["name"]]
        sub_path = mount.get("subPath")
        if sub_path:
            host = host / sub_path
            if not host.exists():
                host.mkdir(parents=True)
        mounts[mount["mountPath"]] = host
    return mounts


def _source(store: ObjectStore, kind: str, namespace: str, name: Any) -> Obj | None:
    return store.find(kind, namespace, str(name)) if name else None


def _data(obj: Obj | None, field: str) -> dict[str, str]:
    if obj is None:
        return {}
    data: dict[str, str] = obj.get(field) or {}
    return data


def _write(
    folder: Path,
    files: Mapping[str, bytes],
    source: Mapping[str, Any],
    missing: bool,
    volume: str,
) -> None:
    if missing and not source.get("optional"):
        reference = source.get("secretName") or source.get("name")
        raise VolumeNotReady(
            f'MountVolume.SetUp failed for volume "{volume}": "{reference}" not found'
        )
    folder.mkdir(parents=True, exist_ok=True)
    items = source.get("items")
    targets = (
        {item["key"]: item["path"] for item in items if item["key"] in files}
        if items
        else {key: key for key in files}
    )
    for key, relative in targets.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[key])
