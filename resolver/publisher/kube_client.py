"""A kubernetes ApiClient from ``--kubeconfig``, in-cluster config, or ``~/.kube/config``.

Each agent gets its own client configuration (never the library's global default), with
timeouts set per request by the reflectors. urllib3's own retries are off: an unreachable API
server would otherwise log a warning per retry (45 in 20 s were seen); the reflectors retry
with backoff and log once, then throttled.
"""

from __future__ import annotations

import os

import yaml
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
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError("--kubeconfig", f"{kubeconfig or '~/.kube/config'} is not a YAML kubeconfig{where}: "
                          "pass a kubeconfig file (kubectl config view --raw > FILE)") from None
    except (k8s_config.ConfigException, OSError, ValueError, TypeError, AttributeError, KeyError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError("--kubeconfig", f"cannot load Kubernetes configuration from "
                          f"{kubeconfig or 'in-cluster/~/.kube/config'}: {first}") from None
    configuration.retries = False
    return k8s.ApiClient(configuration)
