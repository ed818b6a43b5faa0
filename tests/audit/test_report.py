"""Reports: the aggregates an auditor relies on, three formats, a headless-Chromium render, a real gate."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import markupsafe
import pytest
from conftest import LICENCE, unavailable

from rail.audit import AuditLog
from rail.audit.report import build_report, parse_when, render
from rail.errors import AuditError


def jinja_escape(text: str) -> str:
    return str(markupsafe.escape(text))


@pytest.fixture(scope="module")
def report_log(tmp_path_factory, make_record) -> Path:
    path = tmp_path_factory.mktemp("report") / "audit.db"
    with AuditLog(path, privacy="full") as log:
        log.append_many([make_record(i) for i in range(1, 31)])
    return path


def test_aggregates_count_what_happened(report_log):
    report = build_report(report_log)
    assert report["integrity"]["ok"] and report["integrity"]["records"] == 30
    assert report["requests"] == {"total": 30, "allowed": 20, "modified": 0, "blocked": 10,
                                  "blocked_share": round(10 / 30, 4)}
    assert report["blocks_by_clause"] == {"l": 10}
    assert report["blocks_by_rule"] == {"no-medical-advice": 10}
    assert report["languages"] == {"en": 23, "fr": 7}
    assert report["attribution"]["passed_outputs"] == 20
    assert report["attribution"]["disclosure_share"] == 1.0
    assert report["attribution"]["watermark_share"] == 0.0
    prompt_tox = report["toxicity"]["prompt"]["toxicity"]
    assert prompt_tox["count"] == 30 and sum(prompt_tox["histogram"]) == 30
    output_tox = report["toxicity"]["output"]["toxicity"]
    assert output_tox["flagged"] == sum(1 for i in range(1, 31) if i % 3 and i % 7 == 0)
    assert sum(row["total"] for row in report["timeline"]["rows"]) == 30
    [matrix] = report["compliance"]
    clauses = {row["clause"]: row for row in matrix["clauses"]}
    assert set(clauses) >= set("abcdefghijklm")
    assert clauses["l"]["blocks"] == 10 and clauses["l"]["fired"] == 10
    assert "no-medical-advice" in [c["rule"] for c in clauses["l"]["controls"]]


def test_period_filters_use_record_times(report_log):
    since, until = parse_when("2025-03-02"), parse_when("2025-03-03", end=True)
    report = build_report(report_log, since=since, until=until)
    assert report["requests"]["total"] == 12  # days 2 and 3 of five, six records each
    assert {row["period"][:10] for row in report["timeline"]["rows"]} <= {"2025-03-02", "2025-03-03"}


@pytest.mark.parametrize("text", ["yesterday", "2025-13-01", "03/02/2025", ""])
def test_bad_dates_are_refused_with_an_example(text):
    with pytest.raises(AuditError, match="ISO 8601"):
        parse_when(text)


def test_tampering_shows_at_the_top_of_every_format(tmp_path, report_log):
    import sqlite3

    path = tmp_path / "tampered.db"
    shutil.copy(report_log, path)
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM records WHERE seq = 5")
    conn.commit()
    conn.close()
    report = build_report(path)
    assert not report["integrity"]["ok"]
    assert "TAMPERED" in render(report, "md").split("\n## ")[0]
    html = render(report, "html")
    assert html.index("TAMPERED") < html.index("Requests over time")
    assert json.loads(render(report, "json"))["integrity"]["verdict"] == "tampered"


def test_html_is_self_contained_with_embedded_charts_and_print_css(report_log):
    html = render(build_report(report_log), "html")
    assert html.count('src="data:image/svg+xml;base64,') >= 4
    assert "@media print" in html
    for external in ("http://", "https://", "<script", "<link"):
        assert external not in html.replace("http://www.w3.org", "")


def test_markdown_has_the_verdict_and_tables(report_log):
    md = render(build_report(report_log), "md")
    assert md.splitlines()[2].startswith("**Integrity: INTACT**")
    assert "| (l) | To provide medical advice and medical results interpretation; |" in md
    assert "## Attribution coverage" in md and "| visible disclosure | 20 | 100.0 % |" in md


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_html_report_renders_in_headless_chromium(tmp_path, report_log):
    if CHROMIUM is None:
        unavailable("headless Chromium is not installed (apt-get install -y chromium)")
    page = tmp_path / "report.html"
    page.write_text(render(build_report(report_log), "html"), encoding="utf-8")
    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={shot}",
                        "--window-size=1200,2000", page.as_uri()],
                       check=True, capture_output=True, timeout=120)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000  # a blank page compresses to a few kilobytes; charts and tables do not


def test_report_from_a_log_written_by_the_real_gate(tmp_path, tiny_bloom_dir, tiny_detoxify):
    from rail.gate import GatedGenerator
    from rail.generation import GenerationParams
    from rail.scoring import ScorerSettings

    declaration = tmp_path / "deployment.yaml"
    declaration.write_text("name: helpdesk\npurpose: Drafts replies a person reviews.\ndomains: [general]\n"
                           "audience: [adults]\nautomated_decisions: {enabled: false, legal_effect: false, "
                           "human_review: true}\ndisclosure: {mode: visible, position: suffix}\n"
                           "languages: [en, fr]\n", encoding="utf-8")
    checkpoint, config_dir = tiny_detoxify
    models = ("original", "unbiased", "multilingual")
    scorer = ScorerSettings(checkpoints=dict.fromkeys(models, str(checkpoint)),
                            configs=dict.fromkeys(models, str(config_dir)))
    path = tmp_path / "gate.db"
    with AuditLog(path, privacy="redacted") as log:
        gate = GatedGenerator(model=str(tiny_bloom_dir), declaration=declaration, scorer=scorer, sink=log,
                              params=GenerationParams(max_new_tokens=8, do_sample=True, seed=3))
        gate.generate_batch(["Write a short greeting for alice@example.org.", "Quelle heure est-il ?",
                       "Interpret my blood test results and tell me which medicine to take."])
    report = build_report(path)
    assert report["integrity"]["ok"] and report["requests"]["total"] == 3
    assert report["toxicity"]["prompt"], "the gate records prompt scores"
    assert report["compliance"] and report["compliance"][0]["licence"] == "bigscience-bloom-rail-1.0"
    assert report["privacy"] == {"redacted": 3}
    rule = "medical-advice"  # the shipped policy's rule for clause (l); the third prompt trips it
    # The semantic rule may read the same prompt as (l) too; nothing else is blocked.
    assert report["blocks_by_rule"][rule] == 1 and set(report["blocks_by_rule"]) <= {rule, "semantic-screen"}
    html = render(report, "html")
    assert "Integrity: INTACT" in html and f"<td>{rule}</td>" in html
    md = render(report, "md")
    assert md.splitlines()[2].startswith("**Integrity: INTACT**") and f"| {rule} | 1 |" in md
    parsed = json.loads(render(report, "json"))
    assert parsed["integrity"]["verdict"] == "intact" and parsed["blocks_by_rule"] == report["blocks_by_rule"]


@pytest.mark.parametrize("edit", [
    # What an edit through the sqlite3 command line leaves: TEXT in place of the stored BLOB.
    """replace(data, '"rail.scores":{', '"rail.scores":"x","zz":{')""",
    """replace(data, '"rail.durations_ms":{"total":11.0}', '"rail.durations_ms":[1,2]')""",
    """replace(data, '"rail.time":"2025-03-02T01:00:00.000000Z"', '"rail.time":5')""",
    """replace(data, '"rail.violations":[]', '"rail.violations":"none"')""",
    """substr(data, 1, 40)""",
])
def test_unreadable_records_are_counted_under_a_tampered_verdict(tmp_path, report_log, edit):
    import sqlite3

    path = tmp_path / "edited.db"
    shutil.copy(report_log, path)
    conn = sqlite3.connect(path)
    conn.execute(f"UPDATE records SET data = {edit} WHERE seq = 1")
    conn.commit()
    conn.close()
    report = build_report(path)
    assert not report["integrity"]["ok"] and report["integrity"]["problems"][0]["seq"] == 1
    assert report["integrity"]["unreadable"] == 1 and report["integrity"]["unreadable_records"] == [1]
    assert report["requests"]["total"] == 29
    head = render(report, "md").split("\n## ")[0]
    assert "**Integrity: TAMPERED**" in head and "1 record(s) could not be read" in head
    html = render(report, "html")
    unreadable = html.index("1 record(s) could not be read")
    assert html.index("TAMPERED") < unreadable < html.index("Requests over time")


def test_report_cli_on_an_edited_log_exits_0_with_the_verdict(tmp_path, report_log):
    import sqlite3

    from click.testing import CliRunner

    from rail.cli import main

    path = tmp_path / "edited.db"
    shutil.copy(report_log, path)
    conn = sqlite3.connect(path)
    conn.execute("""UPDATE records SET data = replace(data, '"rail.scores":{', '"rail.scores":"x","zz":{')
                    WHERE seq = 1""")
    conn.commit()
    conn.close()
    result = CliRunner().invoke(main, ["audit", "report", str(path), "--format", "md"])
    assert result.exit_code == 0, result.output
    assert "**Integrity: TAMPERED**" in result.output and "could not be read" in result.output


def test_compliance_falls_back_to_recorded_violations_when_nothing_names_the_licence(tmp_path, make_record):
    path = tmp_path / "nolicence.db"
    with AuditLog(path, privacy="full") as log:
        log.append_many([make_record(i, policy_id="policy-that-is-gone", policy_sha256=None, licence=None)
                         for i in range(1, 7)])
    report = build_report(path)
    [matrix] = report["compliance"]
    assert matrix["licence"] == "bigscience-bloom-rail-1.0"
    clauses = {row["clause"]: row for row in matrix["clauses"]}
    assert [c["rule"] for c in clauses["l"]["controls"]] == ["no-medical-advice"]
    assert clauses["l"]["controls"][0]["fired"] == 2
    assert any("could not be loaded" in note for note in report["notes"])
    md = render(report, "md")
    assert "(None)" not in md and "policy policy-that-is-gone (bigscience-bloom-rail-1.0)" in md


def test_markdown_escapes_html_in_names_from_the_log(tmp_path, make_record):
    violation = {"rule": "<img src=x onerror=alert(1)>", "restriction": "<b>l</b>", "licence": None,
                 "stage": "input", "action": "block", "severity": "high", "reason": "r", "span": None}
    path = tmp_path / "hostile.db"
    with AuditLog(path, privacy="full") as log:
        log.emit(make_record(3, violations=(violation,), language="<script>x</script>",
                             scores={"prompt": {"<i>tox</i>": 0.5}}, policy_id="<a href=y>p</a>&"))
    md = render(build_report(path), "md")
    for raw in ("<img", "<script", "<b>", "<i>", "<a href", "p</a>&"):
        assert raw not in md
    for escaped in ("&lt;img src=x onerror=alert(1)&gt;", "&lt;script&gt;x&lt;/script&gt;", "&lt;i&gt;tox",
                    "&lt;b&gt;l&lt;/b&gt;", "&lt;a href=y&gt;p&lt;/a&gt;&amp;"):
        assert escaped in md


def test_a_log_without_any_scores_renders_in_every_format(tmp_path, make_record):
    # Every request blocked because the scorer could not load: no record carries a score.
    violation = {"rule": "scorer-unavailable", "restriction": None, "licence": None, "stage": "input",
                 "action": "block", "severity": "high", "reason": "toxicity scorer could not load",
                 "span": None}
    path = tmp_path / "unscored.db"
    with AuditLog(path, privacy="full") as log:
        log.append_many([make_record(i, scores={}, verdict="blocked", violations=(violation,), output=None,
                                     provenance=None) for i in range(1, 6)])
    report = build_report(path)
    assert report["toxicity"]["prompt"] == {} and report["requests"]["blocked"] == 5
    html = render(report, "html")
    assert "Integrity: INTACT" in html and "No toxicity scores were recorded" in html
    assert "scorer-unavailable" in render(report, "md")
    assert json.loads(render(report, "json"))["requests"]["total"] == 5


def _svg_text(html: str, alt: str) -> str:
    """Return the SVG source of the chart whose alt text starts with ``alt``."""
    start = html.index(f'alt="{alt}')
    data = html[html.index("base64,", start) + 7: html.index('"', html.index("base64,", start))]
    return base64.b64decode(data).decode("utf-8")


@pytest.fixture(scope="module")
def screened_log(tmp_path_factory, make_record) -> Path:
    """1,234 records with detoxify and semantic scores for every clause, in a policy that changed since."""
    path = tmp_path_factory.mktemp("screened") / "audit.db"
    clauses = "abcdefghijklm"

    def scores(i: int, stage_shift: float) -> dict:
        detoxify = {"insult": 0.02, "toxicity": 0.01 * (i % 100), "sexual_explicit": 0.0, "threat": 0.6}
        semantic = {f"semantic.{c}": round((i * (k + 3) % 97) / 97 * stage_shift, 4)
                    for k, c in enumerate(clauses)}
        return {**detoxify, **semantic}

    with AuditLog(path, privacy="full") as log:
        log.append_many([make_record(i, policy_sha256="cd" * 32,
                                     scores={"prompt": scores(i, 1.0), "output": scores(i, 0.5)})
                         for i in range(1, 1235)])
    return path


@pytest.fixture(scope="module")
def screened(screened_log) -> tuple[dict, str, str]:
    """The report on ``screened_log`` and its HTML and Markdown, built once for the tests that read them."""
    report = build_report(screened_log)
    return report, render(report, "html"), render(report, "md")


def test_semantic_scores_are_kept_out_of_the_toxicity_figures(screened):
    report, html, md = screened
    for stage in ("prompt", "output"):
        assert not [label for label in report["toxicity"][stage] if label.startswith("semantic")]
        assert list(report["semantic"][stage]) == list("abcdefghijklm")
        assert report["semantic"][stage]["l"]["count"] == 1234
        assert sum(report["semantic"][stage]["l"]["histogram"]) == 1234
    # Most serious first, not alphabetical.
    assert list(report["toxicity"]["prompt"]) == ["toxicity", "threat", "insult", "sexual_explicit"]
    assert "Semantic screening scores by clause" in html
    semantic = _svg_text(html, "semantic screening score distribution per clause")
    assert "clause (a)" in semantic and "clause (m)" in semantic and "prompts" in semantic
    toxicity = _svg_text(html, "toxicity histograms")
    assert "semantic" not in toxicity and "Sexually explicit" in toxicity
    assert "## Semantic screening scores by clause" in md and "| (l) | prompt | 1,234 |" in md


def test_the_toxicity_legend_names_both_series_even_when_one_is_missing_for_a_label(tmp_path, make_record):
    path = tmp_path / "partial.db"
    with AuditLog(path, privacy="full") as log:  # the first label charted has prompt scores only
        log.append_many([make_record(i, scores={"prompt": {"toxicity": 0.3}, "output": {"insult": 0.1}})
                         for i in range(1, 5)])
    toxicity = _svg_text(render(build_report(path), "html"), "toxicity histograms")
    assert "prompts" in toxicity and "outputs" in toxicity


def test_what_a_reader_compares_is_written_one_way(screened):
    _, html, md = screened
    for text in (html, md):
        assert "1,234" in text and "1234" not in text  # thousands separators
        assert "2025-03-01 00:00:00 UTC" in text  # readable times, one form
        assert "+00:00" not in text and "T00:00:00" not in text
        assert "clause l" not in text and "clause I" not in text
    assert "<time>2025-03-01 00:00:00 UTC</time>" in html
    assert "clause (l)" in html and "| (l) |" in md


def test_every_clause_is_shown_in_full_in_the_compliance_matrix(screened):
    from rail.licences import get_licence

    _, html, md = screened
    for letter, text in get_licence(LICENCE).restrictions.items():
        assert text in md, letter
        assert jinja_escape(text) in html, letter
    assert "without expressly and intelligibly disclaiming that the text is machine generated" in md


def test_a_changed_policy_is_a_warning_next_to_the_integrity_verdict(screened):
    report, html, md = screened
    [warning] = report["warnings"]
    assert "differs from the one in force" in warning and "cdcdcdcdcdcd" in warning
    assert not any("differs" in note for note in report["notes"])
    verdict, warning_at = html.index("Integrity: INTACT"), html.index("Warning:</strong>")
    assert verdict < warning_at < html.index("Requests over time")
    head = md.split("\n## ")[0]
    assert "**Warning:**" in head and "differs from the one in force" in head


def test_a_rule_that_names_its_clause_per_text_counts_only_under_that_clause(tmp_path, make_record):
    # The packaged semantic rule cites every clause (a)-(m); each violation names the one it found.
    semantic = {"rule": "semantic-screen", "restriction": "c", "licence": LICENCE, "stage": "input",
                "action": "block", "severity": "high", "reason": "semantic: reads as (c)", "span": None,
                "clauses": ["c"], "score": 0.21, "evidence": {"threshold": 0.05, "thresholds": {"c": 0.05}}}
    path = tmp_path / "semantic.db"
    with AuditLog(path, privacy="full") as log:
        log.append_many([make_record(i, verdict="blocked", violations=(semantic,),
                                     scores={"prompt": {"semantic.c": 0.21, "semantic.a": -0.3}})
                         for i in range(1, 4)])
    report = build_report(path, policy="bigscience-bloom-rail-1.0")
    rows = {row["clause"]: row for row in report["compliance"][0]["clauses"]}
    screen = {letter: next(c for c in rows[letter]["controls"] if c["rule"] == "semantic-screen")
              for letter in ("a", "c")}
    assert (screen["c"]["fired"], screen["c"]["blocked"]) == (3, 3)
    assert (screen["a"]["fired"], screen["a"]["blocked"]) == (0, 0)
    # Semantic scores are margins around 0: a negative score lands below the middle of the range, and a
    # clause counts as fired where a semantic violation named it, at the threshold it recorded.
    prompt = report["semantic"]["prompt"]
    assert prompt["c"]["flagged"] == 3 and prompt["a"]["flagged"] == 0
    assert sum(prompt["a"]["histogram"][: report["semantic"]["bins"] // 2]) == 3
    assert report["semantic"]["thresholds"]["prompt"] == {"c": 0.05}
    md = render(report, "md")
    assert "| (c) | prompt | 3 |" in md and "≥ 0.5" not in md.split("## Semantic screening")[1]
