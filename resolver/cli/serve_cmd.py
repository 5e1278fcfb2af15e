"""``serve``: run the pluggable NameResolution component on a Unix socket until signalled."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from resolver.cli.common import startup_layers
from resolver.component.instances import Instances
from resolver.component.server import serve_until_signalled
from resolver.config import Layer
from resolver.config.settings import PROCESS_KEYS
from resolver.observability.metrics import serve_metrics

log = logging.getLogger(__name__)


def configures_instances(layers: list[Layer]) -> bool:
    """True when start-up sources set a key other than the process-level limits.

    ``--set maxStreams=512`` alone tunes the server; it must not create a start-up instance
    that resolves for never-initialized names against the default etcd.
    """
    return any(key not in PROCESS_KEYS for layer in layers for key in layer.values)


def cmd_serve(args: argparse.Namespace) -> int:
    layers, has_startup_config = startup_layers(args)
    socket_path = Path(args.socket_dir).absolute() / f"{args.name}.sock"
    instances = Instances(layers, has_startup_config and configures_instances(layers))
    try:
        serve_metrics(args.metrics_port)
        return serve_until_signalled(instances, socket_path, args.grace)
    except BaseException:
        instances.close_all()
        raise
