"""``python -m resolver`` is the same as the ``dapr-etcd-resolver`` command."""

from resolver.cli.main import main

raise SystemExit(main())
