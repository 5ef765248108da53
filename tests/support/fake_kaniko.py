"""A stand-in for the Kaniko executor: builds a step image into a local folder.

Run as a script (`python fake_kaniko.py --context=tar://... --destination=...
--fake-registry=DIR --fake-work=DIR`) by the fake cluster's Kaniko runtime. It
reads the context tar, interprets the Dockerfile instructions Stepforge writes
and the simple ones a step's own Dockerfile may add, and writes the image as a
folder under the registry, keyed by the destination reference:

- FROM python:3.X-slim gives the image a Python 3.X found on this host (the
  host's own, with a log line, when there is none); a CUDA base gives none.
- COPY and WORKDIR write into the image folder; COPY --from the uv image links
  this host's uv binary; ENV, USER, CMD and ENTRYPOINT are recorded.
- RUN runs on this host with the image's paths rewritten into the image folder,
  except lines that would change the host: apt-get only checks that the
  packages are installed (and fails as apt does when one is not), groupadd and
  useradd only record the user. `uv venv --python 3.X` gets a local 3.X.

The image folder holds `fs/` (the image's files) and `image.json` (its config),
written last, so an image folder with a config is complete.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

IMAGE_CONFIG = "image.json"
IMAGE_FILES = "fs"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UV_IMAGE_PREFIX = "ghcr.io/astral-sh/uv:"

# Container paths whose files the image itself holds; others are the host's.
_BASE_ROOTS = ("/stepforge", "/usr/local/bin")
# Top folders of a real system: a COPY or WORKDIR under one makes only its
# own path an image path, never the whole folder.
_SYSTEM_TOPS = frozenset(
    "bin boot dev etc home lib lib32 lib64 media mnt opt proc root run sbin srv "
    "sys tmp usr var".split()
)
_PYTHON_BASE = re.compile(r"^(?:docker\.io/)?(?:library/)?python:(3\.\d+)(?:[.-].*)?$")
_CUDA_BASE = re.compile(r"^(?:docker\.io/)?nvidia/cuda:(\d+\.\d+\.\d+)-.*$")
_VERSION = re.compile(r"^3\.\d+$")
_SHELL_OPERATORS = frozenset({"&&", "||", ";", "|", "&"})
_KANIKO_FLAGS = frozenset(
    {"context", "dockerfile", "destination", "digest-file", "insecure", "verbosity"}
)


class BuildError(Exception):
    """Ends the build; the message is what Kaniko would print."""


def image_folder(registry: Path, reference: str) -> Path:
    """Where the registry at `registry` keeps the image `reference`."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", reference)[:80]
    digest = hashlib.sha256(reference.encode()).hexdigest()[:16]
    return registry / "images" / f"{cleaned}-{digest}"


def main(argv: Sequence[str]) -> int:
    started = time.monotonic()
    try:
        options = _parse_flags(argv)
        build = _Build(options, started)
        build.run()
    except BuildError as error:
        print(f"error building image: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


def _parse_flags(argv: Sequence[str]) -> dict[str, list[str]]:
    options: dict[str, list[str]] = {}
    for arg in argv:
        name, has_value, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or (
            name not in _KANIKO_FLAGS and not name.startswith("fake-")
        ):
            raise BuildError(f"unknown flag: {arg}")
        options.setdefault(name, []).append(value if has_value else "true")
    for required in ("context", "destination", "fake-registry", "fake-work"):
        if required not in options:
            raise BuildError(f"flag --{required} is required")
    return options


class _Build:
    def __init__(self, options: dict[str, list[str]], started: float) -> None:
        self._started = started
        context = options["context"][0]
        if not context.startswith("tar://"):
            raise BuildError(
                f"the fake Kaniko reads tar:// contexts only, not {context}"
            )
        self._context_tar = Path(context.removeprefix("tar://"))
        self._dockerfile = options.get("dockerfile", ["Dockerfile"])[0]
        self._destinations = options["destination"]
        self._digest_file = options.get("digest-file", [""])[0]
        self._registry = Path(options["fake-registry"][0])
        self._work = Path(options["fake-work"][0])
        self._image = image_folder(self._registry, self._destinations[0])
        self._files = self._image / IMAGE_FILES
        self._roots: list[str] = list(_BASE_ROOTS)
        self._env: dict[str, str] = {}
        self._config: dict[str, Any] = {}
        self._workdir = "/"
        self._from_seen = False

    def run(self) -> None:
        context = self._unpack()
        path = context / self._dockerfile
        if not path.is_file():
            raise BuildError(
                f"error resolving dockerfile path: {self._dockerfile} is not in the "
                "context"
            )
        instructions = _parse_dockerfile(path.read_text())
        # Built in place: a virtual environment holds its own absolute path.
        shutil.rmtree(self._image, ignore_errors=True)
        self._files.mkdir(parents=True)
        for keyword, rest in instructions:
            self._info(f"{keyword} {rest}".strip())
            self._apply(keyword, rest, context)
        self._push(context)

    def _unpack(self) -> Path:
        target = self._work / "context"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        try:
            with tarfile.open(self._context_tar, "r:gz") as tar:
                tar.extractall(target, filter="data")
        except (OSError, tarfile.TarError) as error:
            raise BuildError(f"getting the build context: {error}") from None
        return target

    def _apply(self, keyword: str, rest: str, context: Path) -> None:
        if keyword != "FROM" and not self._from_seen:
            if keyword == "ARG":
                return
            raise BuildError(f"{keyword} before the first FROM")
        if keyword == "FROM":
            self._from(rest)
        elif keyword == "ENV":
            self._env.update(_env_pairs(rest, self._env))
        elif keyword == "ARG":
            name, _, default = rest.partition("=")
            self._env.setdefault(name.strip(), _substitute(default, self._env))
        elif keyword == "WORKDIR":
            self._workdir = self._absolute(_substitute(rest.strip(), self._env))
            self._add_root(self._workdir)
            self._host_path(self._workdir).mkdir(parents=True, exist_ok=True)
        elif keyword in ("COPY", "ADD"):
            self._copy(rest, context)
        elif keyword == "USER":
            self._config["user"] = _substitute(rest.strip(), self._env)
        elif keyword in ("CMD", "ENTRYPOINT"):
            self._config[keyword.lower()] = _exec_form(rest) or ["/bin/sh", "-c", rest]
        elif keyword == "RUN":
            self._run(rest)
        elif keyword in ("LABEL", "EXPOSE", "STOPSIGNAL", "VOLUME", "HEALTHCHECK"):
            return
        else:
            raise BuildError(f"the fake Kaniko cannot interpret {keyword}")

    def _from(self, rest: str) -> None:
        if self._from_seen:
            raise BuildError("the fake Kaniko builds single-stage Dockerfiles only")
        self._from_seen = True
        base = rest.split()[0].split("@")[0]
        self._info(f"Retrieving image manifest {base}")
        self._env["PATH"] = DEFAULT_PATH
        python_match = _PYTHON_BASE.match(base)
        cuda_match = _CUDA_BASE.match(base)
        if python_match:
            python = _local_python(python_match.group(1), self._info)
            bin_dir = self._host_path("/usr/local/bin")
            bin_dir.mkdir(parents=True, exist_ok=True)
            for name in (f"python{python_match.group(1)}", "python3", "python"):
                (bin_dir / name).symlink_to(python)
            self._env.update(LANG="C.UTF-8", PYTHON_VERSION=_full_version(python))
        elif cuda_match:
            self._env.update(
                CUDA_VERSION=cuda_match.group(1),
                NVIDIA_VISIBLE_DEVICES="all",
                NVIDIA_DRIVER_CAPABILITIES="compute,utility",
            )
        else:
            raise BuildError(
                f"retrieving image {base}: MANIFEST_UNKNOWN: the fake Kaniko knows "
                "python:3.X and nvidia/cuda bases only"
            )
        self._config["base"] = base

    def _copy(self, rest: str, context: Path) -> None:
        words = _exec_form(rest) or shlex.split(rest)
        flags = {
            w.partition("=")[0]: w.partition("=")[2]
            for w in words
            if w.startswith("--")
        }
        paths = [_substitute(w, self._env) for w in words if not w.startswith("--")]
        if len(paths) < 2:
            raise BuildError(f"COPY needs a source and a destination: {rest}")
        *sources, destination = paths
        if destination.endswith("/") or len(sources) > 1:
            destination = destination.rstrip("/") + "/"
        target = self._absolute(destination.rstrip("/")) + (
            "/" if destination.endswith("/") else ""
        )
        self._add_root(target.rstrip("/"))
        if "--from" in flags:
            self._copy_from_image(flags["--from"], sources, target)
            return
        for source in sources:
            matches = sorted(glob.glob(str(context / source)))
            if not matches:
                raise BuildError(
                    f"COPY failed: no source files were specified: {source}"
                )
            for match in matches:
                found = Path(match)
                if not found.resolve().is_relative_to(context.resolve()):
                    raise BuildError(f"COPY failed: {source} is outside the context")
                self._copy_one(found, target)
        mode = flags.get("--chmod")
        if mode:
            self._host_path(target.rstrip("/")).chmod(int(mode, 8))

    def _copy_one(self, source: Path, target: str) -> None:
        host = self._host_path(target.rstrip("/"))
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(source, host, symlinks=True, dirs_exist_ok=True)
            return
        if target.endswith("/"):
            host.mkdir(parents=True, exist_ok=True)
            host = host / source.name
        host.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, host, follow_symlinks=False)

    def _copy_from_image(self, image: str, sources: list[str], target: str) -> None:
        if not image.startswith(UV_IMAGE_PREFIX) or sources != ["/uv"]:
            raise BuildError(
                f"COPY --from={image}: the fake Kaniko can only copy /uv from the uv "
                "image"
            )
        host = self._host_path(target.rstrip("/"))
        if target.endswith("/"):
            host = host / "uv"
        host.parent.mkdir(parents=True, exist_ok=True)
        host.unlink(missing_ok=True)
        host.symlink_to(_uv_binary())

    def _run(self, rest: str) -> None:
        argv = _exec_form(rest)
        text = rest if argv is None else " ".join(argv)
        if re.search(r"\bapt(-get)?\b", text):
            self._apt(text)
            return
        if re.search(r"\b(useradd|groupadd|adduser|addgroup)\b", text):
            self._add_user(text)
            return
        if argv is None:
            argv = ["/bin/sh", "-c", self._rewrite(rest)]
        else:
            argv = [self._rewrite(arg) for arg in argv]
        argv = self._local_uv_python(argv)
        self._info(f"Running: {argv}")
        cwd = self._host_path(self._workdir)
        cwd.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            argv,
            cwd=cwd,
            env=self._process_env(),
            stdin=subprocess.DEVNULL,
            stdout=sys.stdout,
            stderr=sys.stderr,
            check=False,
        )
        if result.returncode != 0:
            raise BuildError(
                "error building stage: failed to execute command: waiting for "
                f"process to exit: exit status {result.returncode}"
            )
        self._info("Taking snapshot of full filesystem...")

    def _apt(self, text: str) -> None:
        packages = _apt_packages(text)
        if not packages:
            self._info("the fake Kaniko skips apt-get lines that install nothing")
            return
        from stepforge.services.build.system_packages import missing_system_packages

        print("Reading package lists...", flush=True)
        missing = missing_system_packages(packages)
        if missing:
            for name in missing:
                print(
                    f"E: Unable to locate package {name}", file=sys.stderr, flush=True
                )
            raise BuildError(
                "error building stage: failed to execute command: waiting for "
                "process to exit: exit status 100"
            )
        print(
            f"{' '.join(packages)}: already installed on this host (the fake Kaniko "
            "installs nothing)",
            flush=True,
        )

    def _add_user(self, text: str) -> None:
        words = shlex.split(text)
        for index, word in enumerate(words):
            if word in ("useradd", "adduser"):
                options = words[index + 1 :]
                uid = _option(options, "--uid") or _option(options, "-u") or "?"
                name = next(
                    (w for w in reversed(options) if not w.startswith("-")), "?"
                )
                self._config.setdefault("users", {})[name] = uid
                print(f"added user {name} with uid {uid} (recorded only)", flush=True)

    def _local_uv_python(self, argv: list[str]) -> list[str]:
        """`uv venv --python 3.X` fetches no Python here: a local one is used."""
        if "venv" not in argv or not any(Path(a).name == "uv" for a in argv[:1]):
            return argv
        result = list(argv)
        for index, arg in enumerate(result):
            if arg in ("--python", "-p") and index + 1 < len(result):
                if _VERSION.match(result[index + 1]):
                    result[index + 1] = str(
                        _local_python(result[index + 1], self._info)
                    )
            elif arg.startswith("--python=") and _VERSION.match(arg[9:]):
                result[index] = "--python=" + str(_local_python(arg[9:], self._info))
        return result

    def _process_env(self) -> dict[str, str]:
        env = {name: self._rewrite(value) for name, value in self._env.items()}
        env.update(
            HOME=str(self._work / "home"),
            UV_PYTHON_DOWNLOADS="never",
            UV_CACHE_DIR=str(self._registry / "uv-cache"),
            UV_NO_CONFIG="1",
            NO_COLOR="1",
        )
        (self._work / "home").mkdir(exist_ok=True)
        return env

    def _push(self, context: Path) -> None:
        digest = hashlib.sha256()
        for path in sorted(context.rglob("*")):
            digest.update(path.relative_to(context).as_posix().encode() + b"\0")
            if path.is_file() and not path.is_symlink():
                digest.update(path.read_bytes())
        image_digest = f"sha256:{digest.hexdigest()}"
        venv_python = self._files / "stepforge" / "venv" / "bin" / "python"
        config = dict(
            self._config,
            reference=self._destinations[0],
            digest=image_digest,
            env=self._env,
            workdir=self._workdir,
            roots=self._roots,
            venv_python=str(venv_python) if venv_python.exists() else "",
        )
        for destination in self._destinations:
            self._info(f"Pushing image to {destination}")
        (self._image / IMAGE_CONFIG).write_text(json.dumps(config, indent=2))
        repository = self._destinations[0].rsplit(":", 1)[0]
        self._info(f"Pushed {repository}@{image_digest}")
        if self._digest_file:
            Path(self._digest_file).write_text(image_digest)

    def _absolute(self, path: str) -> str:
        if path.startswith("/"):
            return os.path.normpath(path)
        return os.path.normpath(os.path.join(self._workdir, path))

    def _add_root(self, path: str) -> None:
        parts = Path(path).parts
        if len(parts) < 2:
            return
        root = "/" + parts[1] if parts[1] not in _SYSTEM_TOPS else path
        if root not in self._roots and not any(
            root.startswith(known + "/") for known in self._roots
        ):
            self._roots.append(root)

    def _host_path(self, path: str) -> Path:
        return self._files / path.lstrip("/")

    def _rewrite(self, text: str) -> str:
        return rewrite_image_paths(text, self._roots, self._files)

    def _info(self, message: str) -> None:
        elapsed = int(time.monotonic() - self._started)
        print(f"INFO[{elapsed:04d}] {message}", flush=True)


def rewrite_image_paths(text: str, roots: Sequence[str], files: Path) -> str:
    """`text` with each image path (under one of `roots`) pointing into
    `files`, wherever it starts a word, a `--flag=` value or a PATH entry."""
    if not roots:
        return text
    pattern = "|".join(re.escape(root) for root in sorted(roots, key=len, reverse=True))
    return re.sub(
        rf"(?<![A-Za-z0-9_./-])({pattern})(?=/|$|[\s'\"`;:&|<>()=,])",
        lambda match: str(files) + match.group(1),
        text,
    )


def _parse_dockerfile(text: str) -> list[tuple[str, str]]:
    lines = text.split("\n")
    escape = "\\"
    for line in lines:
        match = re.match(r"^#\s*escape\s*=\s*(\S)\s*$", line.strip(), re.IGNORECASE)
        if match:
            escape = match.group(1)
            break
        if not re.match(r"^#\s*\w+\s*=", line.strip()):
            break
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if re.search(r"<<-?[\"']?[A-Za-z_]", stripped) and not current:
            raise BuildError("the fake Kaniko does not support here-documents")
        if stripped.endswith(escape):
            current += stripped[: -len(escape)] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    if current:
        raise BuildError("the Dockerfile ends with a line continuation")
    return instructions


def _exec_form(rest: str) -> list[str] | None:
    if not rest.strip().startswith("["):
        return None
    try:
        parsed = json.loads(rest)
    except ValueError:
        return None
    if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
        return parsed
    return None


def _env_pairs(rest: str, env: dict[str, str]) -> dict[str, str]:
    words = shlex.split(_substitute(rest, env))
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    pairs = {}
    for word in words:
        name, _, value = word.partition("=")
        pairs[name] = value
    return pairs


def _substitute(text: str, env: dict[str, str]) -> str:
    return re.sub(
        r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))",
        lambda match: env.get(match.group(1) or match.group(2), ""),
        text,
    )


def _apt_packages(text: str) -> list[str]:
    words = shlex.split(text)
    packages: list[str] = []
    installing = False
    for word in words:
        if word in _SHELL_OPERATORS:
            installing = False
        elif installing and not word.startswith("-"):
            packages.append(word)
        elif word == "install":
            installing = True
    return packages


def _option(words: list[str], name: str) -> str | None:
    for index, word in enumerate(words):
        if word == name and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(name + "="):
            return word.partition("=")[2]
    return None


def _local_python(version: str, info: Callable[[str], None]) -> Path:
    from stepforge.services.build.interpreters import find_python, host_python

    found = find_python(version)
    if found is not None:
        return found
    host, host_version = host_python()
    info(
        f"Python {version} is not installed on this host; the fake image uses the "
        f"host's Python {host_version} at {host}"
    )
    return host


def _full_version(python: Path) -> str:
    from stepforge.services.build.interpreters import exact_version

    return exact_version(python)


def _uv_binary() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
