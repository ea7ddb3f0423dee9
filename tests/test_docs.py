"""Docs that cannot drift: the CLI reference is generated and checked, every command and
file format is documented, and every relative link points at something that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gitgw.cli.reference import REGENERATE, command_paths, render_reference
from gitgw.records import KINDS, Kind

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.rglob("*.md")])

_FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1\s*$", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _prose(text: str) -> str:
    """`text` without code blocks and code spans, where brackets are not links."""
    return _CODE.sub("", _FENCE.sub("", text))


def _anchor(heading: str) -> str:
    """The anchor a forge gives a heading (GitHub's and Gitea's rule for plain text)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_anchor(h) for h in _HEADING.findall(_FENCE.sub("", page.read_text()))}


def test_cli_reference_is_current() -> None:
    current = (DOCS / "cli.md").read_text() if (DOCS / "cli.md").is_file() else ""
    assert current == render_reference(), f"docs/cli.md is stale; regenerate it: {REGENERATE}"


@pytest.mark.parametrize("command", command_paths())
def test_every_command_is_in_the_reference(command: str) -> None:
    assert f"## `{command}`\n" in (DOCS / "cli.md").read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_at_something_that_exists(page: Path) -> None:
    broken = []
    for target in _LINK.findall(_prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto: and the like
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif ROOT not in resolved.parents and resolved != ROOT:
            broken.append(f"{target} (outside the repository)")
        elif fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved):
            broken.append(f"{target} (no heading with that anchor)")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


def test_the_docs_index_links_every_page() -> None:
    index = _prose((DOCS / "index.md").read_text())
    linked = {(DOCS / t.partition("#")[0]).resolve() for t in _LINK.findall(index)}
    missing = [p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")
               if p.name != "index.md" and p.resolve() not in linked]  # fmt: skip
    assert not missing, f"docs/index.md does not link: {missing}"


@pytest.mark.parametrize("kind", [k for k in KINDS if k.model is not None], ids=lambda k: k.name)
def test_every_file_format_is_documented_with_its_schema(kind: Kind) -> None:
    text = (DOCS / "file-formats.md").read_text()
    assert f"../schemas/{kind.name}.schema.json" in text
    assert f"`{kind.template}`" in text


def test_readme_quickstart_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    first = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/gitgw demo"
    second = (
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && .venv/bin/python -m tests"
    )
    assert first in readme
    assert second in readme
    assert second in (ROOT / ".ci" / "run").read_text()
