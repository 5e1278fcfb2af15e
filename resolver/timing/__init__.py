"""Timing policies every role shares: :mod:`~resolver.timing.backoff`, the one retry schedule.

A bottom layer beside :mod:`resolver.errors`: it imports nothing of the project, so the etcd
client, the registry reader and the Kubernetes publisher — three layers apart — can all wait by
the same schedule without any of them importing another's package for it.
"""
