"""The catalog's two secrets: the read token (``--token-file``) and the write token (``--write-token-file``).

Both are compared in constant time (:func:`hmac.compare_digest`). Dapr's consul resolver sends
one ``client.token`` for reads *and* its registration, so the write token is accepted for reads
too; the read token never allows a write. Without a write token, writes are refused: a role
that anyone on the network could register services with would let anyone redirect callers.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

HOW_TO_SEND = "this catalog needs a token (X-Consul-Token header, Authorization: Bearer, or ?token=)"
WRITES_OFF = ("self-registration is off; start the role with --write-token-file FILE and send that token "
              "(docs/consul.md, Self-registration)")


@dataclass(frozen=True)
class Tokens:
    read: bytes = b""
    write: bytes = b""

    @classmethod
    def of(cls, read: str, write: str) -> Tokens:
        return cls(read.encode(), write.encode())

    @property
    def read_required(self) -> bool:
        return bool(self.read)

    def read_refusal(self, given: str) -> str | None:
        """None if a read with ``given`` may proceed, else the ``403`` message."""
        if not self.read:
            return None
        if not given:
            return f"Permission denied: {HOW_TO_SEND}"
        # both compared, always: the time taken does not tell which token (if any) was close
        read_ok = hmac.compare_digest(given.encode(), self.read)
        write_ok = hmac.compare_digest(given.encode(), self.write or self.read)
        return None if read_ok or (self.write and write_ok) else "ACL not found"

    def write_refusal(self, given: str) -> str | None:
        """None if a write with ``given`` may proceed, else the ``403`` message."""
        if not self.write:
            return f"Permission denied: {WRITES_OFF}"
        if not given:
            return f"Permission denied: registering needs the write token; {HOW_TO_SEND}"
        return None if hmac.compare_digest(given.encode(), self.write) else "ACL not found"
