"""Making the socket path safe to bind, in the spirit of OpenSSH's checks on its own files.

daprd discovers pluggable components in ``$DAPR_COMPONENTS_SOCKETS_FOLDER``, by default the
fixed path ``/tmp/dapr-components-sockets`` (dapr/dapr ``pkg/components/pluggable/discovery.go``).
A per-user default elsewhere would not be found by a daprd started without that variable, so
the default stays Dapr's — and the directory is checked instead: under world-writable ``/tmp``
another local user can create it first, then unlink our socket and bind their own, and every
sidecar would resolve through them. So:

* a directory (or any directory above it) owned by another non-root user is refused;
* a root-owned directory is accepted whatever its mode: Kubernetes' ``emptyDir`` is root-owned
  0777 and shared only within the pod, and the pluggable-component layout depends on it;
* a missing directory is created 0750 (owner and group: share it with daprd through a group);
* a stale socket (nothing answers) is replaced; a live one, or a path that is not a socket, is
  never removed.

Every refusal is one line naming the path, the reason and the fix.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from pathlib import Path

from resolver.errors import SocketInUse, UnsafeSocketDir

log = logging.getLogger(__name__)

DIR_MODE = 0o750
MAX_SOCKET_PATH_BYTES = 107
"""``sun_path`` holds 108 bytes on Linux, one of them the terminating NUL."""


def _owner_name(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def _check_owner(path: Path, info: os.stat_result, me: int) -> None:
    if info.st_uid not in (0, me):
        raise UnsafeSocketDir(
            f"refusing socket directory {path}: it is owned by {_owner_name(info.st_uid)}, not by root or by "
            f"us (uid {me}), so that user could replace our socket; remove it, or choose another directory "
            "with --socket-dir / DAPR_COMPONENTS_SOCKETS_FOLDER")


def ensure_socket_dir(directory: Path) -> None:
    """Create ``directory`` (0750) if missing and check it and every directory above it."""
    me = os.geteuid()
    if not directory.exists():
        try:
            directory.parent.mkdir(parents=True, exist_ok=True)
            directory.mkdir(mode=DIR_MODE)
            os.chmod(directory, DIR_MODE)  # mkdir's mode is filtered by the umask
            log.info("created socket directory %s (mode %o)", directory, DIR_MODE)
        except FileExistsError:
            pass  # created meanwhile by someone else: the checks below decide
        except OSError as error:
            raise UnsafeSocketDir(f"cannot create socket directory {directory}: {error.strerror}; create it "
                                  "or choose another with --socket-dir") from None
    try:
        link = directory.lstat()
    except OSError as error:
        raise UnsafeSocketDir(f"cannot use socket directory {directory}: {error.strerror}") from None
    if stat.S_ISLNK(link.st_mode):
        _check_owner(directory, link, me)
    try:
        info = directory.stat()
    except OSError as error:
        raise UnsafeSocketDir(f"cannot use socket directory {directory}: {error.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeSocketDir(f"socket directory {directory} exists and is not a directory; remove it or choose "
                              "another with --socket-dir")
    for path in [directory.resolve(), *directory.resolve().parents]:
        _check_owner(path, path.stat(), me)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UnsafeSocketDir(f"socket directory {directory} is not writable by uid {me}; fix its permissions or "
                              "choose another with --socket-dir")


def _socket_answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        return True
    except OSError as error:
        if error.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        if error.errno in (errno.EACCES, errno.EPERM):
            raise SocketInUse(f"{path} belongs to a server we may not connect to (permission denied); "
                              "refusing to remove it") from None
        raise
    finally:
        probe.close()


def prepare_socket(path: Path) -> None:
    """Make ``path`` free to bind: check its directory, remove a stale socket, refuse a live one."""
    if len(os.fsencode(str(path))) > MAX_SOCKET_PATH_BYTES:
        raise UnsafeSocketDir(f"socket path {path} is {len(os.fsencode(str(path)))} bytes, over the "
                              f"{MAX_SOCKET_PATH_BYTES}-byte limit of Unix sockets; use a shorter --socket-dir or "
                              "--name")
    ensure_socket_dir(path.parent)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketInUse(f"{path} exists and is not a socket; refusing to remove it (move it away or choose "
                          "another --name)")
    if _socket_answers(path):
        raise SocketInUse(f"another server is already answering on {path}; stop it or choose another --name")
    log.info("removing stale socket %s", path)
    path.unlink()
