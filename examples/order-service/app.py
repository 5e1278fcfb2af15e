"""The order service of Dapr's hello-kubernetes sample, as a Python gRPC app that says where it runs.

Methods invoked through Dapr service invocation:

* ``neworder`` — body ``{"data": {"orderId": 42}}``; keeps the order and answers
  ``{"orderId": 42, "status": "received", "cluster": "cluster-1", "pod": "..."}``;
* ``order`` — answers the last order received, and again which cluster answered.

The ``cluster`` field is the point: a caller in ``cluster-2`` sees from the reply which
cluster's instance the cross-cluster name resolution picked. Run it with
``python app.py`` (port ``$APP_PORT``, default 50051) beside a daprd started with
``--app-protocol grpc``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from typing import Any

from dapr.ext.grpc import App, InvokeMethodRequest, InvokeMethodResponse

CLUSTER = os.environ.get("CLUSTER_NAME", "unknown")
POD = os.environ.get("POD_NAME") or socket.gethostname()

app = App()
_lock = threading.Lock()
_orders: dict[str, Any] = {"last": None}
log = logging.getLogger("order-service")


def _reply(payload: dict[str, Any], status: int = 200) -> InvokeMethodResponse:
    return InvokeMethodResponse(json.dumps({**payload, "cluster": CLUSTER, "pod": POD}).encode(),
                                "application/json")


@app.method(name="neworder")
def neworder(request: InvokeMethodRequest) -> InvokeMethodResponse:
    try:
        body = json.loads(request.text() or "{}")
        order = body.get("data", body) if isinstance(body, dict) else None
        order_id = order.get("orderId") if isinstance(order, dict) else None
    except ValueError:
        order_id = None
    if order_id is None:
        return _reply({"status": "rejected", "error": 'expected {"data": {"orderId": ...}}'})
    with _lock:
        _orders["last"] = {"orderId": order_id}
    log.info("got a new order: %s", order_id)
    return _reply({"orderId": order_id, "status": "received"})


@app.method(name="order")
def order(request: InvokeMethodRequest) -> InvokeMethodResponse:
    with _lock:
        return _reply({"order": _orders["last"]})


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    port = int(os.environ.get("APP_PORT", "50051"))
    log.info("order service in %s listening on %d", CLUSTER, port)
    app.run(port)
