"""Started as a script by the scoring environment's Python (never imported by the reconciler):
Azure ML's inference server (``azmlinfsrv``), as the image runs it, with three changes made from
outside its code:

* it listens on 127.0.0.1 only (the server binds 0.0.0.0, the image's network namespace);
* the scoring process cannot reach any address but loopback: an audit hook refuses other
  connections and name lookups, so samples never reach the network;
* it dies with the reconciler: a watchdog thread kills the whole process group (gunicorn's
  master and workers) once the parent process is gone, even after a ``kill -9``.

Usage: ``python launcher.py PARENT_PID [azmlinfsrv arguments...]``
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
from typing import Any

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "::1", ""}


def _loopback(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    name = str(host).strip("[]").lower()
    return name in LOOPBACK_NAMES or name.startswith("127.") or name.startswith("::ffff:127.")


def _guard(event: str, args: tuple[Any, ...]) -> None:
    host = None
    if event in ("socket.connect", "socket.sendto") and len(args) >= 2 and isinstance(args[1], tuple):
        host = args[1][0] if args[1] else None
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr") and args:
        host = args[0]
    else:
        return
    if not _loopback(host):
        raise PermissionError(f"edge-reconciler: network access to {host!r} is blocked while scoring samples "
                              "(only 127.0.0.1 is reachable)")


def _watch(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os.killpg(0, signal.SIGKILL)
        time.sleep(0.5)


def main(argv: list[str]) -> None:
    parent = int(argv[1])
    sys.addaudithook(_guard)
    threading.Thread(target=_watch, args=(parent,), daemon=True).start()
    constants = importlib.import_module("azureml_inference_server_http.constants")
    setattr(constants, "DEFAULT_HOST", "127.0.0.1")  # noqa: B010 - read by amlserver's `from .constants import *`, imported next
    try:
        config = importlib.import_module("gunicorn.config")
        known = {getattr(setting, "name", None) for setting in config.KNOWN_SETTINGS}
        if "control_socket_disable" in known and not os.environ.get("GUNICORN_CMD_ARGS"):
            # gunicorn >= 25 opens a control socket in $HOME: one per server, never shared.
            os.environ["GUNICORN_CMD_ARGS"] = "--no-control-socket"
    except (ImportError, AttributeError, TypeError):
        pass
    sys.argv = ["azmlinfsrv", *argv[2:]]
    importlib.import_module("azureml_inference_server_http.amlserver").run()


if __name__ == "__main__":
    main(sys.argv)
