"""Debian's Chromium as the console's tests and docs/console_screenshots.py
launch it (/work/shared/notes/browser.md): headless, no sandbox (root), and
none of its background traffic, which this machine's closed network refuses."""

from __future__ import annotations

import shutil

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
