"""The README documents every setting there is, and no setting that is not."""

from __future__ import annotations

import re
from pathlib import Path

from workers.config import documented_settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# Variables of the deployment itself (compose, `make images`), not settings.
DEPLOYMENT = (ROOT / "docker" / "compose.yaml").read_text() + (
    ROOT / "docker" / "images.sh"
).read_text()


def test_readme_documents_every_setting() -> None:
    table = {row.split("|")[1] for row in README.splitlines() if row.startswith("| `")}
    documented = " ".join(table)
    # `_MIN` / `_MAX` share a row with `_DEFAULT`; FLOWER_USER/_PASSWORD with _PORT.
    for variable, _default in documented_settings():
        stem = re.sub(r"_(MIN|MAX|USER|PASSWORD)$", "", variable)
        assert stem in documented, f"{variable} is not in the README's configuration table"


def test_readme_names_no_setting_that_does_not_exist() -> None:
    known = {variable for variable, _ in documented_settings()}
    known |= set(re.findall(r"\$\{(JOBGATE_[A-Z_]+)", DEPLOYMENT))
    known |= set(re.findall(r"^#\s+(JOBGATE_[A-Z_]+)\s", DEPLOYMENT, re.MULTILINE))
    named = set(re.findall(r"JOBGATE_[A-Z_]+[A-Z]", README))
    expanded = {n for n in named if not n.endswith(("_MIN", "_MAX"))}
    assert expanded - known == set()
