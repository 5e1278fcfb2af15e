"""Reachability: probe other clusters' endpoints and leave the unreachable out of answers (docs/reachability.md)."""

from resolver.reachability.gate import Reachability, enabled

__all__ = ["Reachability", "enabled"]
