"""The example state in `example-repo/`: every file is valid, and it seeds a state branch."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from gitgw.concepts.checks import check_file
from gitgw.records import KINDS, kind_of
from gitgw.services.init import example_dir
from tests.conftest import run_cli

EXAMPLE = Path(__file__).resolve().parent.parent / "example-repo"
FILES = sorted(p.relative_to(EXAMPLE).as_posix() for p in EXAMPLE.rglob("*") if p.is_file())


def test_the_package_finds_this_example() -> None:
    assert example_dir().resolve() == EXAMPLE


@pytest.mark.parametrize("path", FILES)
def test_every_example_file_passes_the_checks(path: str) -> None:
    check_file(path, (EXAMPLE / path).read_bytes())


def test_the_example_has_a_file_of_every_kind_a_person_or_gitgw_writes() -> None:
    present = {found[0].name for path in FILES if (found := kind_of(path)) is not None}
    # Conflicts appear only when a sync meets one file edited on both sides.
    expected = {kind.name for kind in KINDS if not kind.name.startswith("conflict")}
    assert expected <= present, f"no example of: {sorted(expected - present)}"


def _expected_counts() -> tuple[int, int, Counter[str]]:
    """(files, add-only records, files per kind), worked out from the directory itself."""
    records = 0
    per_kind: Counter[str] = Counter()
    for path in FILES:
        found = kind_of(path)
        assert found is not None, path
        kind = found[0]
        if kind.model is not None:
            per_kind[kind.name] += 1
        if kind.add_only:
            records += len(check_file(path, (EXAMPLE / path).read_bytes()).records) or 1
    return len(FILES), records, per_kind


def test_init_example_then_verify_passes_with_every_record_counted(example_repo: Path) -> None:
    files, records, _ = _expected_counts()

    ran = run_cli("--repo", str(example_repo), "verify", "--json")

    assert ran.exit_code == 0, ran.stdout + ran.stderr
    report = json.loads(ran.stdout)["data"]
    assert report["ok"] is True
    assert report["problems"] == []
    assert report["commits"] == 1
    assert (report["files"], report["records"]) == (files, records)


def test_status_counts_the_example_files_per_kind(example_repo: Path) -> None:
    _, _, per_kind = _expected_counts()

    ran = run_cli("--repo", str(example_repo), "status", "--json")

    assert ran.exit_code == 0, ran.stderr
    data = json.loads(ran.stdout)["data"]
    assert {kind: n for kind, n in data["counts"].items() if n} == dict(per_kind)
    assert data["unknown"] == []


def test_demo_seeds_shows_and_verifies_the_example(tmp_path: Path) -> None:
    ran = run_cli("demo", str(tmp_path / "demo"), "--no-serve")

    assert ran.exit_code == 0, ran.stdout + ran.stderr
    assert f"with the example state ({len(FILES)} files)" in ran.stdout
    assert "verify: ok" in ran.stdout
