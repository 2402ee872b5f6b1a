"""What a newcomer meets in the first hour stays true: the README's deploy table, every module a page names,
every link's anchor, the ingest page's statements about the clients, every CLI option's help."""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest

from ..conftest import ROOT

PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
FILE_SUFFIXES = (".toml", ".json", ".md", ".py", ".yaml", ".txt", ".example")
FILE_NAMES = r"\.(toml|json|example|restricted|connections)\b"  # relay.example.toml and its kin


def _template_parameters() -> dict:
    from relay_tools.stack import load_template

    return load_template(ROOT / "template.yaml")["Parameters"]


def _deploy_table() -> dict[str, str]:
    """The README's deploy table: parameter -> what it says `sam deploy --guided` offers."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Deploy") : text.index("## Repository layout")]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`[A-Za-z0-9]+`", cells[0]):
            offered = cells[1].strip("`")
            rows[cells[0].strip("`")] = "" if offered == "(empty)" else offered
    return rows


def test_the_readmes_deploy_table_lists_every_parameter_with_what_sam_deploy_guided_offers():
    """`sam deploy --guided` asks every template parameter, offering what samconfig.toml's default
    environment sets, else the template's default."""
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())["default"]["deploy"]["parameters"]
    overrides = dict(shlex.split(part)[0].split("=", 1) for part in config["parameter_overrides"].split())
    parameters = _template_parameters()
    table = _deploy_table()
    assert list(table) == list(parameters), "the table lists the template's parameters, in its order"
    for name, spec in parameters.items():
        assert table[name] == str(overrides.get(name, spec.get("Default", ""))), name
    assert set(overrides) <= set(parameters), "samconfig.toml overrides a parameter the template lacks"


def test_the_signing_secret_is_read_as_its_value_not_its_json():
    for page in ("README.md", "docs/operations.md", "docs/clients.md"):
        text = (ROOT / page).read_text()
        reads = [m.start() for m in re.finditer(r"get-secret-value --secret-id <IngestSigningSecretArn>", text)]
        assert reads, page
        for start in reads:
            assert 'json.load(sys.stdin)["secret"]' in text[start : start + 250], page


def _dotted(text: str) -> set[str]:
    names = set()
    for code in re.findall(r"`([^`\n]+)`", text):
        for name in re.findall(r"(?<![\w.-])(relay(?:_tools)?(?:\.[A-Za-z_][A-Za-z0-9_]*)+)", code):
            if not name.endswith(FILE_SUFFIXES) and not re.search(FILE_NAMES, name):
                names.add(name)
    return names


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(target, attr):
                try:
                    target = importlib.import_module(f"{target.__name__}.{attr}")
                except (ImportError, AttributeError):
                    return False
            else:
                target = getattr(target, attr)
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_dotted_module_reference_exists(page):
    missing = sorted(n for n in _dotted(page.read_text()) if not _resolves(n))
    assert not missing, f"{page.name} names what the code does not have: {missing}"


def slug(heading: str) -> str:
    """The anchor mkdocs' toc extension gives a heading (its default slugify)."""
    text = re.sub(r"`|\*\*", "", heading)
    text = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_anchor_exists(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


CLIENTS = {"Python": "python", "Node.js": "node", "shell": "shell", "Go": "go", "PHP": "php"}


def test_the_pages_name_every_client_there_is():
    """The clients are the directories of clients/; the pages that list languages list them all."""
    assert sorted(p.name for p in (ROOT / "clients").iterdir() if p.is_dir()) == sorted(CLIENTS.values())
    for page in ("docs/clients.md", "docs/ingest-api.md", "clients/README.md"):
        text = (ROOT / page).read_text()
        for sentence in re.split(r"\n\s*\n", text):  # paragraphs (a table is one)
            named = [language for language in CLIENTS if re.search(rf"\b{re.escape(language)}\b", sentence)]
            if len(named) >= 4:  # a list of the clients: all of them
                assert len(named) == len(CLIENTS), (page, sentence)


def _parser() -> argparse.ArgumentParser:
    from relay_tools.cli import build_parser

    return build_parser()


def _all_actions(parser: argparse.ArgumentParser, prefix: str = "relay"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_actions(sub, f"{prefix} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield prefix, action


def test_every_cli_option_has_help():
    missing = [f"{cmd} {a.option_strings or a.dest}" for cmd, a in _all_actions(_parser()) if not a.help]
    assert not missing, missing


def test_relay_dlq_takes_the_vendor_as_a_word_or_an_option():
    parser = _parser()
    for argv in (["dlq", "list", "applovin"], ["dlq", "list", "--vendor", "applovin"]):
        args = parser.parse_args([*argv, "--stack", "s"])
        assert (args.vendor_word or args.vendor) == "applovin", argv
    with pytest.raises(SystemExit):
        parser.parse_args(["dlq", "list", "nobody", "--stack", "s"])


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
