"""The fake cluster as tests use it: started in a `with` block, reached through
the kubeconfig it writes."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from .api import ClusterApi
from .deletion import Deleter
from .images import ImageRegistry
from .jobs import JobController
from .kinds import kind_named
from .kubelet import Kubelet
from .meta import Obj
from .nodes import FakeNode, node_object
from .runtimes import ImageRuntime
from .scheduler import Scheduler
from .server import ApiServer
from .state import ObjectStore

DEFAULT_NODES = (FakeNode("node-1"),)
_CONTEXT = "fake-kube"


class FakeCluster:
    """A running fake cluster: API server, Job controller, scheduler, kubelets."""

    def __init__(
        self,
        url: str,
        kubeconfig: Path,
        nodes: tuple[FakeNode, ...],
        store: ObjectStore,
        api: ClusterApi,
        images: ImageRegistry,
    ) -> None:
        self.url = url
        self.kubeconfig = kubeconfig
        self.nodes = nodes
        self._store = store
        self._api = api
        self._images = images

    def register_image(self, prefix: str, runtime: ImageRuntime) -> None:
        """Runs containers whose image starts with `prefix` with `runtime`; the
        longest registered prefix of an image wins."""
        self._images.register(prefix, runtime)

    def objects(self, kind: str, namespace: str) -> list[Obj]:
        """The live objects of `kind` ("Job", "Pod", ...) in `namespace` (any
        value for cluster-scoped kinds), by name."""
        served = kind_named(kind)
        items, _ = self._store.select(kind, namespace if served.namespaced else None)
        return items

    def created(self, kind: str) -> list[Obj]:
        """Every object of `kind` ever created through the API, as received
        (and, for "Pod", each pod the Job controller made, as made)."""
        kind_named(kind)
        return self._api.created(kind)


@contextmanager
def running_fake_cluster(
    root: Path, nodes: Sequence[FakeNode] | None = None
) -> Iterator[FakeCluster]:
    """Starts a fake cluster keeping its files under `root` (by default one
    node without GPUs); stops it, killing every pod's processes, at the end."""
    chosen = tuple(nodes) if nodes is not None else DEFAULT_NODES
    _check_nodes(chosen)
    home = root / "fake-kube"
    (home / "pods").mkdir(parents=True, exist_ok=True)
    store = ObjectStore()
    for node in chosen:
        store.create(node_object(node))
    images = ImageRegistry()
    deleter = Deleter(store)
    kubelet = Kubelet(store, Scheduler(chosen), images, home / "pods")
    api = ClusterApi(store, deleter, kubelet)
    controller = JobController(
        store, deleter, on_pod_created=lambda pod: api.record_created("Pod", pod)
    )
    token = secrets.token_urlsafe(24)
    server = ApiServer(api, token)
    with ExitStack() as stack:
        stack.callback(store.close)
        kubelet.start()
        stack.callback(kubelet.stop)
        controller.start()
        stack.callback(controller.stop)
        server.start()
        stack.callback(server.stop)
        kubeconfig = _write_kubeconfig(home / "kubeconfig", server.url, token)
        yield FakeCluster(server.url, kubeconfig, chosen, store, api, images)


def _check_nodes(nodes: tuple[FakeNode, ...]) -> None:
    if not nodes:
        raise ValueError("running_fake_cluster needs at least one node")
    names = [node.name for node in nodes]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"node names must be unique; repeated: {duplicates}")


def _write_kubeconfig(path: Path, url: str, token: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": _CONTEXT, "cluster": {"server": url}}],
        "users": [{"name": _CONTEXT, "user": {"token": token}}],
        "contexts": [
            {
                "name": _CONTEXT,
                "context": {
                    "cluster": _CONTEXT,
                    "user": _CONTEXT,
                    "namespace": "default",
                },
            }
        ],
        "current-context": _CONTEXT,
    }
    # A kubeconfig holds a credential: readable by its owner only.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(config, file, indent=2)
    return path
