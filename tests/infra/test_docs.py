"""The documentation: generated blocks match their sources, the README stays short, no diary."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from ..conftest import ROOT

PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]


def test_generated_blocks_show_what_their_sources_hold():
    """bench/results.json, reliability/*.json, the CLI's parser, the template's alarms and the adapters'
    reasons: `python docs/render.py --check` fails when a page differs from them."""
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "render.py"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_readme_is_for_a_newcomer():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for heading in (
        "## Prerequisites",
        "## Quick start",
        "## Your first signed event",
        "## Deploy",
        "## Repository layout",
    ):
        assert heading in text, heading


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_development_history_in_the_docs(page):
    """Docs are for users: no session times, no "was X, now Y", nothing about a build machine, no files
    from outside the repository."""
    text = page.read_text()
    for pattern in (
        r"this session",
        r"this machine",
        r"this VM",
        r"build machine",
        r"found and fixed",
        r"\(was \$",
        r"\bVENDORS\.md\b",
        r"\bthe seeds?\b|\bseed \d{3}\b|seed example",
        r"\d\d:\d\d UTC",
        r"issue #\d+",
    ):
        assert not re.search(pattern, text, re.I), f"{page.name}: {pattern}"


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").rglob("*.md"):
        assert str(page.relative_to(ROOT / "docs")) in nav, page
