"""Connecting to the cluster: a kubeconfig, or the pod's own service account."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from stepforge.services.kubernetes.settings import KubernetesSettings

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

MISSING_CLIENT = (
    "the Kubernetes backends need the `kubernetes` package: "
    "pip install 'stepforge[server,kubernetes]'"
)


def api_client(settings: KubernetesSettings) -> ApiClient:
    """An API client for the cluster the settings name.

    Inside a pod with no kubeconfig named, the in-cluster service account is
    used; otherwise `settings.kubeconfig`, $KUBECONFIG or ~/.kube/config.
    """
    try:
        from kubernetes import client, config
    except ImportError:
        raise RuntimeError(MISSING_CLIENT) from None
    configuration = client.Configuration()
    if settings.kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ:
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(
            config_file=str(settings.kubeconfig) if settings.kubeconfig else None,
            context=settings.context,
            client_configuration=configuration,
        )
    return client.ApiClient(configuration)
