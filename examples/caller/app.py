"""A caller for the order service: invokes ``neworder`` through its Dapr sidecar and prints who answered.

The sidecar resolves ``order-service`` with dapr-etcd-resolver (DNS bridge or pluggable
component), so with the order service running in several clusters the ``cluster`` field of each
reply shows the traffic policy at work — FailOver keeps to the caller's own cluster
(``$CLUSTER_NAME``) until it has no instance left, then the replies say "remote".

    python app.py [--app-id order-service] [--count 0 (forever)] [--interval 1]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter

from dapr.clients import DaprClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app-id", default="order-service", help="target app id, or appid.namespace")
    parser.add_argument("--count", type=int, default=0, help="orders to send (0: forever)")
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    answered_by: Counter[str] = Counter()
    here = os.environ.get("CLUSTER_NAME", "")
    print(f"caller in {here or 'an unnamed cluster'} calling {args.app_id}", flush=True)
    with DaprClient() as client:
        order_id = 0
        while args.count == 0 or order_id < args.count:
            order_id += 1
            try:
                body = json.dumps({"data": {"orderId": order_id}})
                response = client.invoke_method(args.app_id, "neworder", data=body, content_type="application/json",
                                                http_verb="POST")
                reply = json.loads(response.text())
                cluster = reply.get("cluster", "?")
                answered_by[cluster] += 1
                where = "local" if cluster == here else "remote"
                print(f"order {order_id}: {reply.get('status')} by {reply.get('pod')} in {cluster} ({where})  "
                      f"(so far: {dict(answered_by)})", flush=True)
            except Exception as error:  # keep calling: the point is to watch failover happen
                print(f"order {order_id}: failed: {error}", flush=True)
            time.sleep(args.interval)


if __name__ == "__main__":
    main()
