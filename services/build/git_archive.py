"""Turning a step's Git repository into its stored code archive."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stepforge._packing import (
    check_code_size,
    iter_archive_chunks,
    require_packed,
    select_files,
)
from stepforge.errors import StepforgeError
from stepforge.services.build.build_log import BuildLog
from stepforge.services.build.git_source import CloneError, GitRequest, cloned
from stepforge.services.build.upload import archive_key
from stepforge.services.core.object_store import ObjectStore
from stepforge.v1 import common_pb2


class SourceError(Exception):
    """The repository cannot give the step's code; the message says why."""


@dataclass(frozen=True)
class GitArchive:
    path: Path
    sha256: str
    size: int
    commit_id: str


def archive_from_git(
    step: common_pb2.Step,
    known_hosts: str,
    scratch_dir: Path,
    store: ObjectStore,
    log: BuildLog,
) -> GitArchive:
    """Clones the step's repository, packs the included files exactly as the
    SDK packs a local folder (same selection, same limit, same bytes), and
    stores the archive under its content hash."""
    config = step.container_config
    request = GitRequest(
        url=config.repository_url,
        branch=config.repository_branch
        if config.HasField("repository_branch")
        else None,
        deploy_key=(
            config.repository_deploy_key
            if config.HasField("repository_deploy_key")
            else None
        ),
        known_hosts=known_hosts,
    )
    try:
        with cloned(request, log) as (tree, commit_id):
            path, sha256, size = _pack(step, tree, scratch_dir)
    except (CloneError, StepforgeError) as error:
        raise SourceError(str(error)) from None
    try:
        key = archive_key(sha256)
        if not store.exists(key):
            store.put_file(key, path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    log.write(f"code archive stored: {size} bytes, sha256 {sha256}")
    return GitArchive(path=path, sha256=sha256, size=size, commit_id=commit_id)


def _pack(
    step: common_pb2.Step, tree: Path, scratch_dir: Path
) -> tuple[Path, str, int]:
    config = step.container_config
    included = (
        list(config.included_folders.values)
        if config.HasField("included_folders")
        else None
    )
    extra = {
        "container_config.requirements_path": (
            config.requirements_path if config.HasField("requirements_path") else None
        ),
        "container_config.dockerfile_path": (
            config.dockerfile_path if config.HasField("dockerfile_path") else None
        ),
    }
    files = select_files(tree, included, extra)
    require_packed(files, step.function_path, "function_path")
    check_code_size(files)
    scratch_dir.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=scratch_dir, suffix=".tar.gz")
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(descriptor, "wb") as archive:
            for chunk in iter_archive_chunks(files):
                digest.update(chunk)
                size += len(chunk)
                archive.write(chunk)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name), digest.hexdigest(), size
