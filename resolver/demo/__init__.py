"""``dapr-etcd-resolver demo``: the whole story on one machine, in under a minute."""
