"""Helpers for tests that look at marlkit's HTML in a real browser (headless Chromium via Playwright).

We drive the distribution's Chromium (Debian: ``apt-get install chromium``; CI's ``.ci/run`` installs
it) instead of Playwright's own download, which needs network access that CI does not have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

# Flags for a quiet, offline, container-friendly headless Chromium (as root, no GPU, no sandbox).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Path of the Chromium to drive; fails the test in CI when there is none, skips it elsewhere.

    ``MARLKIT_CHROMIUM`` overrides the search (e.g. a Chrome on macOS). CI must run the browser tests,
    so a missing browser there is an error; on a student's laptop it only skips them.
    """
    path = os.environ.get("MARLKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    message = "no Chromium found (apt-get install chromium, or set MARLKIT_CHROMIUM to a Chrome/Chromium binary)"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI's .ci/run should have installed it")
    pytest.skip(message)


@contextlib.contextmanager
def launch_chromium() -> Iterator:
    """A headless Chromium ``Browser`` (Playwright sync API), closed on exit."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # one line per request would drown pytest's output
        pass


@contextlib.contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serve ``root`` over HTTP on 127.0.0.1 at a free port; yields the base URL ``http://127.0.0.1:N/``."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --------------------------------------------------------------------------------------------------
# JupyterLab, started for a test and always stopped again
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class JupyterLab:
    """A running JupyterLab server: ``url`` is its base URL (ends with "/"), ``token`` its login token."""

    url: str
    token: str
    root: Path
    log: Path
    process: subprocess.Popen

    def lab_url(self, path: str, workspace: str) -> str:
        """URL that opens ``path`` (relative to ``root``) in a fresh, empty workspace named ``workspace``."""
        return f"{self.url}lab/workspaces/{workspace}/tree/{quote(path)}?token={self.token}"

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


# Quiet and offline: no news or update checks, no extension manager querying PyPI, and the notebook drawn
# in full (no windowing: every cell and output is in the page, so selectors find them all).
LAB_USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _process_tree(pid: int) -> dict[int, str]:
    """{pid: start time} of ``pid``'s descendants (Linux /proc; empty elsewhere). The start time tells a
    process from a later one that reuses its pid."""
    children: dict[int, list[int]] = {}
    started: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process has just exited
        child = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(child)  # fields[1]: ppid
        started[child] = fields[19]  # starttime
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = started[child]
            todo.append(child)
    return found


def _alive(pid: int, start_time: str | None = None) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z" and (start_time is None or fields[19] == start_time)


def _wait_gone(pids: dict[int, str], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(p, s) for p, s in pids.items()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _stop_jupyterlab(lab: JupyterLab) -> list[str]:
    """Stop the server and every kernel it started; returns the processes that would not die (none, normally).

    Kernels run in sessions of their own (jupyter_client starts them so), so killing the server's process
    group alone could leave them behind: they are found first, then the server is asked to shut down
    (which shuts its kernels down), then whatever is left is killed, group by group.
    """
    process = lab.process
    tree = _process_tree(process.pid)
    if process.poll() is None:
        try:  # the polite way: the server shuts down its kernels, then exits
            request = urllib.request.Request(f"{lab.url}api/shutdown", method="POST",
                                             headers={"Authorization": f"token {lab.token}"})
            urllib.request.urlopen(request, timeout=5).close()
        except OSError:
            pass
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        targets = [process.pid] if process.poll() is None else []
        targets += [pid for pid, start in tree.items() if _alive(pid, start)]
        if not targets:
            break
        for pid in targets:  # the server and each kernel lead a process group of their own
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
        _wait_gone(tree, grace)
    survivors = [f"server {process.pid}"] if process.poll() is None else []
    survivors += [f"process {pid}" for pid, start in tree.items() if _alive(pid, start)]
    return survivors


@contextlib.contextmanager
def run_jupyterlab(root: Path, home: Path, env: dict[str, str] | None = None,
                   startup_timeout: float = 90) -> Iterator[JupyterLab]:
    """JupyterLab serving ``root`` on 127.0.0.1 at a free port, token auth, no browser; stopped on exit.

    ``home`` (an empty temporary folder) holds the server's Jupyter config, data, runtime and IPython
    folders, so the user's own settings, kernels and startup files play no part. The server runs this
    Python (the venv), whose ``python3`` kernel is the venv's ipykernel; ``env`` is added to its
    environment (and so to its kernels'). On exit the server and all its kernels are stopped; a process
    that survives even SIGKILL fails the test.
    """
    token = secrets.token_hex(16)
    settings = home / "config" / "lab" / "user-settings"
    for name, values in LAB_USER_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    server_env = {key: value for key, value in os.environ.items()
                  if not key.startswith(("JUPYTER", "IPYTHON"))}  # JUPYTER_PATH, JUPYTER_TOKEN, ...
    server_env.update(
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        IPYTHONDIR=str(home / "ipython"),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        **(env or {}),
    )
    log_path = home / "jupyterlab.log"
    for attempt in range(3):  # another program may take the free port before the server binds it
        port = _free_port()
        command = [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
        ]
        with open(log_path, "w") as log:
            process = subprocess.Popen(command, cwd=root, env=server_env, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        lab = JupyterLab(url=f"http://127.0.0.1:{port}/", token=token, root=root, log=log_path, process=process)
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                if process.poll() is not None:
                    break
                try:
                    request = urllib.request.Request(f"{lab.url}api/status",
                                                     headers={"Authorization": f"token {token}"})
                    urllib.request.urlopen(request, timeout=2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"JupyterLab did not answer in {startup_timeout} s:\n"
                                           f"{lab.log_tail()}") from None
                    time.sleep(0.2)
            if process.poll() is not None:
                if "already in use" in lab.log_tail() and attempt < 2:
                    continue
                raise RuntimeError(f"JupyterLab exited with code {process.returncode}:\n{lab.log_tail()}")
            yield lab
            break
        finally:
            survivors = _stop_jupyterlab(lab)
            if survivors:
                raise RuntimeError(f"JupyterLab left processes running: {survivors}")
