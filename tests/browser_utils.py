"""Helpers for tests that look at marlkit's HTML in a real browser (headless Chromium via Playwright).

We drive the distribution's Chromium (Debian: ``apt-get install chromium``; CI's ``.ci/run`` installs
it) instead of Playwright's own download, which needs network access that CI does not have.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

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
