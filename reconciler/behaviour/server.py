"""One scoring server: Azure ML's inference server in a subprocess on a free port of 127.0.0.1.

The server is always stopped: ``ScoringServer`` is a context manager that kills the whole
process group (gunicorn's master and its workers) on leaving, whatever the reason (an error,
Ctrl-C, a timeout, SIGTERM turned into ``KeyboardInterrupt`` by the command); and the launcher
kills its group itself once the reconciler is gone (see ``launcher.py``).

Its output is read by a thread into a bounded buffer (the last ``LOG_LINES`` lines, each cut to
``LOG_LINE_CHARS``), so a script that prints without end costs nothing but CPU.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from reconciler.errors import BehaviourError

LAUNCHER = Path(__file__).with_name("launcher.py")
LOG_LINES = 400
LOG_LINE_CHARS = 2000
STOP_GRACE = 5.0  # seconds between SIGINT and SIGKILL
POLL = 0.1
HOST = "127.0.0.1"

_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+), in (?P<name>.+)$')


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def user_traceback(lines: list[str], app_dir: Path, sources: Mapping[str, str]) -> str:
    """The first traceback in ``lines`` cut to the user's own frames (files under ``app_dir``,
    shown by their path in the repository via ``sources``) and the exception line: the
    server's and Python's frames are noise to the person who wrote score.py."""
    start = next((i for i, line in enumerate(lines) if "Traceback (most recent call last):" in line), None)
    if start is None:
        return ""
    app = str(app_dir)
    kept: list[str] = []
    keep = False
    exception = ""
    for line in lines[start + 1:]:
        frame = _FRAME.match(line)
        if frame:
            path = frame.group("path")
            keep = path.startswith(app + os.sep)
            if keep:
                relative = path[len(app) + 1:]
                shown = sources.get(relative, relative)
                kept.append(f'  File "{shown}", line {frame.group("line")}, in {frame.group("name")}')
            continue
        if line.startswith(" "):
            if keep:
                kept.append(line)
            continue
        exception = line.strip()
        break
    if not kept and not exception:
        return ""
    return "\n".join(["Traceback (most recent call last), your frames only:", *kept, exception]).rstrip()


class ScoringServer:
    """``azmlinfsrv`` for one image version; ``app_dir`` holds the entry script (``entry``, a
    path in it), ``env`` the variables Azure ML sets (AML_APP_ROOT, AZUREML_MODEL_DIR, ...).
    ``quiet``: capture the server's output (else it goes to this process's stdout)."""

    def __init__(self, python: Path, app_dir: Path, entry: str, env: Mapping[str, str], *, sources: Mapping[str, str],
                 port: int | None = None, quiet: bool = True, start_timeout: float = 120.0,
                 request_timeout: float = 30.0, home: Path | None = None):
        self.python, self.app_dir, self.entry = python, app_dir, entry
        self.sources = dict(sources)
        self.port = port or free_port()
        self.quiet = quiet
        self.start_timeout = start_timeout
        self.request_timeout = request_timeout
        self.log: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self.lines_seen = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        # A clean environment: the user's script sees what the image gives it, not our secrets.
        self.env = {
            "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(home or app_dir.parent),
            "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
            "AML_APP_INSIGHTS_ENABLED": "false",
            # Our client gives up first (one clear line); then the server's own timeout (a 500), then
            # gunicorn's, which kills a worker stuck longer (and restarts it).
            "SCORING_TIMEOUT_MS": str(int((request_timeout + 2) * 1000)),
            "WORKER_TIMEOUT": str(max(1, int(request_timeout) + 5)),
            **env,
        }

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    # --- life cycle -------------------------------------------------------------------

    def __enter__(self) -> ScoringServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        command = [str(self.python), str(LAUNCHER), str(os.getpid()),
                   "--entry_script", str(self.app_dir / self.entry), "--port", str(self.port)]
        try:
            self._process = subprocess.Popen(
                command, cwd=self.app_dir, env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.quiet else None, stderr=subprocess.STDOUT if self.quiet else None,
                start_new_session=True)
        except OSError as exc:
            raise BehaviourError(f"cannot start the scoring server with {self.python}: {exc.strerror or exc}") from None
        if self.quiet and self._process.stdout is not None:
            self._reader = threading.Thread(target=self._read, args=(self._process.stdout,), daemon=True)
            self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self.log.append(raw.decode("utf-8", "replace").rstrip("\n")[:LOG_LINE_CHARS])
            self.lines_seen += 1

    def stop(self) -> None:
        """Stop the server and every worker; safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            # gunicorn's quick shutdown (SIGTERM waits for busy workers, up to its graceful timeout).
            self._signal(process, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_GRACE)
        # Workers that outlived their master (or a master that ignored SIGTERM): no survivors.
        self._signal(process, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_GRACE)
        if self._reader is not None:
            self._reader.join(1.0)

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)

    # --- readiness and requests --------------------------------------------------------

    def wait_ready(self) -> float:
        """Wait until the server answers its liveness probe; return the seconds it took."""
        started = time.monotonic()
        deadline = started + self.start_timeout
        while True:
            process = self._process
            if process is None:
                raise BehaviourError("the scoring server is not running")
            code = process.poll()
            if code is not None:
                time.sleep(0.2)  # let the reader take the last lines
                raise self._start_failure(code)
            if time.monotonic() > deadline:
                raise BehaviourError(
                    f"the scoring server did not answer on {self.url} within {self.start_timeout:g} s: init() may "
                    "still be loading or may hang; make it faster, raise spec.samples.startTimeoutSeconds, or "
                    "watch it start with `reconciler serve`", detail=self.log_tail(10))
            try:
                status, _, _ = self.request("GET", "/", None, timeout=1.0)
                if status == 200:
                    return time.monotonic() - started
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(POLL)

    def request(self, method: str, path: str, body: bytes | None, timeout: float | None = None
                ) -> tuple[int, bytes, float]:
        """One HTTP request to the server; (status, body, seconds). Raises ``OSError`` on timeouts."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=timeout or self.request_timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            started = time.perf_counter()
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read(10_000_000)  # an answer is bounded too
            return response.status, data, time.perf_counter() - started
        finally:
            connection.close()

    def score(self, body: bytes) -> tuple[int, bytes, float]:
        return self.request("POST", "/score", body)

    # --- diagnosis --------------------------------------------------------------------

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(list(self.log)[-lines:])

    def traceback_since(self, seen: int) -> str:
        """The user's traceback among the log lines that arrived after ``seen`` lines."""
        time.sleep(0.05)  # the server logs the traceback as it answers; let the reader catch up
        new = max(0, self.lines_seen - seen)
        recent = list(self.log)[-new:] if new else []
        return user_traceback(recent, self.app_dir, self.sources)

    def _start_failure(self, code: int) -> BehaviourError:
        lines = list(self.log)
        text = "\n".join(lines)
        trace = user_traceback(lines, self.app_dir, self.sources)
        last = trace.splitlines()[-1] if trace else ""
        script = self.sources.get(self.entry, self.entry)
        if "User's init function failed" in text:
            return BehaviourError(f"{script}: init() raised {last}; the server cannot start (fix init(), then run "
                                  "`reconciler test` again)", detail=trace)
        if "Failed to import user script" in text or "UserScriptImportException" in text:
            return BehaviourError(f"{script}: importing it raised {last}; a package may be missing from the conda "
                                  "file's `pip:` list", detail=trace)
        if "ModuleNotFoundError" in text or "No module named" in text:
            return BehaviourError(f"the scoring server could not import what it needs ({last or 'see below'}); "
                                  "add the package to the conda file's `pip:` list", detail=trace or self.log_tail())
        where = "the last lines of its log are below" if self.quiet else "its log is above"
        return BehaviourError(f"the scoring server exited with code {code} before it opened {self.url}; {where}",
                              detail=self.log_tail())
