"""A kubernetes ApiClient from ``--kubeconfig``, in-cluster config, or ``~/.kube/config``.

Each agent gets its own client configuration (never the library's global default), with
timeouts set per request by the reflectors.
"""

from __future__ import annotations

import os

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from resolver.errors import ConfigError


def api_client(kubeconfig: str | None = None) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    try:
        if kubeconfig:
            k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except (k8s_config.ConfigException, OSError) as error:
        raise ConfigError("--kubeconfig", f"cannot load Kubernetes configuration: {error}") from None
    return k8s.ApiClient(configuration)
