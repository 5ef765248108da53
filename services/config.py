"""Settings of a Stepforge server, from flags and environment variables."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from stepforge.services.core.tls import TlsSettings
from stepforge.services.kubernetes.settings import KubernetesSettings

DEFAULT_DATA_DIR = Path("~/.stepforge")
DEFAULT_PORT = 50051
BACKENDS = ("local", "kubernetes")


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # `file:///path` or `s3://KEY:SECRET@host:port/bucket`; None: <data_dir>/objects.
    object_store_url: str | None = None
    # Where the build service finds the registry when they run apart.
    registry_url: str | None = None
    # Fail a build whose Python version is not installed instead of using the host's.
    strict_python_version: bool = False
    build_workers: int = 2
    # Where the execution service finds the build service when they run apart.
    build_url: str | None = None
    # Let step environments see the host's site-packages (a GPU host's CUDA libraries).
    system_site_packages: bool = False
    # Executions that run at once; the others wait in order.
    max_executions: int = field(default_factory=lambda: os.cpu_count() or 1)
    # Run GPU steps on the CPU, with a warning in their logs, on a host with no GPU.
    gpu_fallback_to_cpu: bool = False
    # None serves plaintext, which the command line does only when asked to.
    tls: TlsSettings | None = None
    # `local` builds venvs and runs processes here; `kubernetes` builds images
    # with Kaniko and runs executions as Jobs, as `kubernetes` says.
    build_backend: str = "local"
    execution_backend: str = "local"
    kubernetes: KubernetesSettings | None = None

    def __post_init__(self) -> None:
        for name in ("build_backend", "execution_backend"):
            backend = getattr(self, name)
            if backend not in BACKENDS:
                raise ValueError(
                    f"{name} {backend!r} is not one of {', '.join(BACKENDS)}"
                )
            if backend == "kubernetes" and self.kubernetes is None:
                raise ValueError(
                    f"{name} kubernetes needs the cluster settings: at least "
                    "--image-repository (STEPFORGE_IMAGE_REPOSITORY)"
                )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def resolved_object_store_url(self) -> str:
        return self.object_store_url or (self.data_dir / "objects").as_uri()


def load_service_token(data_dir: Path) -> str:
    """The credential the services present to each other.

    STEPFORGE_SERVICE_TOKEN wins; otherwise it is read from, or created in,
    `<data_dir>/service-token`, readable by its owner only.
    """
    from_env = os.environ.get("STEPFORGE_SERVICE_TOKEN")
    if from_env:
        return from_env
    path = data_dir / "service-token"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = "sfs_" + secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return token
