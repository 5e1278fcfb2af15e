"""The ``dapr-etcd-resolver`` command and its subcommands."""
