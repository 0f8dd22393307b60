"""A real FHIR R4 server on loopback for the FHIR adapter's tests.

``tests/fhir/server`` is a small Node package: ``@medplum/fhir-router`` with its in-memory repository behind
``node:http`` (``server.mjs``). On first use this module installs it (``npm ci`` from the committed
``package-lock.json`` into ``tests/fhir/server/node_modules``, git-ignored; done again only when the lock file
changes), starts ``node server.mjs --port 0`` (the OS picks a free port; the server prints ``listening
<port>``), waits until ``/metadata`` answers, and seeds it with the demo clinic (``tests/fhir/seed.py``).

One server serves the whole test session: ``shared_server()`` starts it once per process and stops it at
exit (the server also exits when its stdin closes, so a killed test run leaves nothing behind). The
``fhir_server`` fixture is the session-scoped way to get it. Without Node.js (>= 20.19) or npm the tests fail
with a message that says so; nothing is skipped.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fhir.seed import demo_sensitive_specialties, seed

__all__ = ["SERVER_DIR", "FhirTestServer", "fhir_server", "make_adapter", "shared_server"]

SERVER_DIR = Path(__file__).resolve().parent / "server"
BASE_PATH = "/fhir/R4"
MIN_NODE = (20, 19)
START_TIMEOUT = 60.0
INSTALL_TIMEOUT = 600.0


class FhirServerError(RuntimeError):
    """The test FHIR server could not be installed or started."""


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise FhirServerError(
            "Node.js is not on PATH: the FHIR adapter tests run a FHIR server on Node.js >= 20.19 "
            "(tests/fhir/server). Install Node.js 20.19+ (e.g. apt-get install nodejs npm)."
        )
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    major, minor = (int(p) for p in version.lstrip("v").split(".")[:2])
    if (major, minor) < MIN_NODE:
        raise FhirServerError(
            f"Node.js {version} is too old for @medplum/fhir-router: 20.19 or newer is needed"
        )
    return node


def ensure_installed() -> None:
    """``npm ci`` in ``tests/fhir/server`` unless node_modules matches the lock file already."""
    _node()
    lock_file = SERVER_DIR / "package-lock.json"
    stamp = SERVER_DIR / "node_modules" / ".clinicbot-installed"
    wanted = hashlib.sha256(lock_file.read_bytes() if lock_file.exists() else b"").hexdigest()
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise FhirServerError("npm is not on PATH: it installs the test FHIR server (tests/fhir/server)")
    # Several pytest processes may start at once (xdist, parallel CI jobs): one installs, the others wait.
    guard = (
        Path(tempfile.gettempdir())
        / f"clinicbot-fhir-npm-{hashlib.sha256(bytes(SERVER_DIR)).hexdigest()[:12]}.lock"
    )
    with guard.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if stamp.exists() and stamp.read_text().strip() == wanted:
                return
            command = [npm, "ci"] if lock_file.exists() else [npm, "install"]
            command += ["--no-audit", "--no-fund", "--loglevel=error"]
            result = subprocess.run(
                command, cwd=SERVER_DIR, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
            )
            if result.returncode != 0:
                raise FhirServerError(
                    f"`{' '.join(command[:2])}` in {SERVER_DIR} failed ({result.returncode}):\n"
                    f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
                )
            stamp.write_text(wanted)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class FhirTestServer:
    """One ``node server.mjs`` process on 127.0.0.1, plus helpers to poke at it from tests."""

    def __init__(self, *, page_size: int = 50) -> None:
        self.page_size = page_size
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self._log: Any = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + BASE_PATH

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self, *, seed_clinic: bool = True) -> FhirTestServer:
        ensure_installed()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives until stop())
        command = [
            _node(),
            "server.mjs",
            "--port",
            "0",
            "--page-size",
            str(self.page_size),
            "--exit-with-stdin",
        ]
        self.process = subprocess.Popen(
            command, cwd=SERVER_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log
        )
        self.port = self._wait_listening()
        self._wait_answering()
        if seed_clinic:
            seed(self.base_url)
        return self

    def _wait_listening(self) -> int:
        assert self.process is not None and self.process.stdout is not None
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(START_TIMEOUT)
        text = line[0].decode().strip() if line else ""
        if not text.startswith("listening "):
            log = self.log()
            self.stop()
            raise FhirServerError(f"the test FHIR server did not start: {text!r}\n{log}")
        return int(text.split()[1])

    def _wait_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self.request("GET", "metadata")
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    log = self.log()
                    self.stop()
                    raise FhirServerError(f"the test FHIR server does not answer\n{log}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            if process.stdin:
                process.stdin.close()
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stdout:
            process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    # --- HTTP helpers (synchronous: fixtures and test set-up run outside the adapter's loop) -------------

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        """``path`` is relative to the FHIR base (``Slot/x``) or absolute from the origin (``/_test/stats``)."""
        url = self.origin + path if path.startswith("/") else f"{self.base_url}/{path}"
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        if data is not None:
            request.add_header("Content-Type", "application/fhir+json")
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"{resource_type}/{resource_id}")
        return result

    def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("PUT", f"{resource['resourceType']}/{resource['id']}", resource)
        return result

    def faults(self, *rules: dict[str, Any]) -> None:
        """Install fault rules (``method``, ``path`` regex, ``status``, ``delayMs``, ``drop``, ``times``)."""
        self.request("POST", "/_test/faults", {"rules": list(rules)})

    def stats(self) -> dict[str, int]:
        result: dict[str, int] = self.request("GET", "/_test/stats")
        return result

    def clear_stats(self) -> None:
        self.request("DELETE", "/_test/stats")


_shared: FhirTestServer | None = None
_shared_lock = threading.Lock()


def shared_server() -> FhirTestServer:
    """The process's seeded test server, started on first use and stopped at exit."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.process is None or _shared.process.poll() is not None:
            _shared = FhirTestServer().start()
            atexit.register(_shared.stop)
        return _shared


def make_adapter(server: FhirTestServer, **options: Any) -> Any:
    """A ``FhirMis`` for the test server, configured like a deployment for the demo clinic."""
    from clinicbot.adapters.mis_fhir import FhirMis

    options.setdefault("sensitive_specialties", demo_sensitive_specialties())
    options.setdefault("page_size", 1000)  # the server's maximum: fewer full scans of its in-memory store
    options.setdefault("timeout", float(os.environ.get("CLINICBOT_TEST_FHIR_TIMEOUT", "10")))
    return FhirMis(server.base_url, **options)


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[FhirTestServer]:
    """The seeded test FHIR server (shared by the whole session)."""
    server = shared_server()
    yield server
    server.faults()  # leave no fault rules behind for other users of the shared server
