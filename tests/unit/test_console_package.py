"""The console's page, scripts and styles ship in the wheel: a non-editable
install (the container image's) serves the same /console as a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "app" / "console"


def console_files() -> set[str]:
    found = set()
    for path in CONSOLE.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            found.add(path.relative_to(ROOT).as_posix())
    return found


@pytest.mark.timeout(600)
def test_the_wheel_carries_every_console_file(tmp_path: Path) -> None:
    files = console_files()
    assert {"app/console/templates/console.html", "app/console/static/main.js"} <= files
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), "."],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=550,
    )
    (wheel,) = tmp_path.glob("jobgate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("app/console/")}
    assert shipped == files
