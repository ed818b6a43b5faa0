"""Regex checks run on RE2: linear time on any input, clear refusals for what RE2 cannot express."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rail.cli import main
from rail.policy import PolicyEngine, load_policy_text

POLICY = """\
id: regex-test
version: "1"
licence: bigscience-bloom-rail-1.0
rules:
  - id: pattern
    description: a user pattern
    restrictions: [{{clause: a}}]
    stages: [input, output]
    check: {{kind: regex, params: {{pattern: '{pattern}'{extra}}}}}
    action: {action}
    severity: high
    coverage: [screened-in-prompts, screened-in-outputs]
"""


def engine(pattern: str, extra: str = "", action: str = "block") -> PolicyEngine:
    return PolicyEngine(load_policy_text(POLICY.format(pattern=pattern, extra=extra, action=action)))


def test_a_pattern_that_backtracks_exponentially_elsewhere_runs_in_linear_time() -> None:
    # (a|a)*$ takes exponential time in a backtracking engine; here a million characters must finish.
    code = (
        "from rail.policy import PolicyEngine, load_policy_text\n"
        f"policy = load_policy_text({POLICY.format(pattern='(a|a)*$', extra='', action='block')!r})\n"
        "engine = PolicyEngine(policy)\n"
        "assert engine.check('a' * 30 + 'b', 'input').allowed\n"
        "assert not engine.check('a' * 1_000_000, 'input').allowed\n"
        "assert engine.check('a' * 1_000_000 + '!', 'input').allowed\n"
        "print('done')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done"


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        (r"(\w+) \1", "a backreference"),
        (r"foo(?=bar)", "a lookahead"),
        (r"foo(?!bar)", "a negative lookahead"),
        (r"(?<=un)lock", "a lookbehind"),
        (r"(?<!un)lock", "a lookbehind"),
        (r"(?>ab|a)c", "an atomic group"),
        (r"a++b", "a possessive quantifier"),
    ],
)
def test_constructs_re2_cannot_express_are_refused_with_file_line_and_field(
    tmp_path: Path, pattern: str, construct: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(pattern=pattern, extra="", action="block"), encoding="utf-8")
    result = CliRunner().invoke(main, ["policy", "validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:5, at rules[0].check.params.pattern: regular expression uses {construct}" in result.output
    assert "Traceback" not in result.output


def test_a_pattern_that_does_not_compile_says_why() -> None:
    from rail.errors import ConfigError

    with pytest.raises(ConfigError, match=r"does not compile: missing \)"):
        engine("a(b")


@pytest.mark.parametrize(
    ("pattern", "text", "matched"),
    [
        (r"\bsign it as \w+ \w+", "Please sign it as José Ramírez today", "sign it as José Ramírez"),
        (r"[\w-]+@[\w.]+", "mail: zoë-müller@exämple.de", "zoë-müller@exämple.de"),
        (r"order \d+", "order ٤٥٦ shipped", "order ٤٥٦"),
        (r"\W\W", "a — b", " —"),
    ],
)
def test_perl_classes_match_every_script_as_in_python(pattern: str, text: str, matched: str) -> None:
    decision = engine(pattern, ", on: original").check(text, "input")
    (violation,) = decision.violations
    assert text[violation.span[0] : violation.span[1]] == matched


def test_spans_point_into_the_original_text_through_normalization() -> None:
    text = "Please, m\u200be\u200bt\u200bh now"
    decision = engine("meth").check(text, "input")
    (violation,) = decision.violations
    assert text[violation.span[0] : violation.span[1]] == "m\u200be\u200bt\u200bh"
    redacted = engine("meth", action="redact").check(text, "output")
    assert redacted.text == "Please, [REDACTED:pattern] now"


def test_ignore_case_is_the_default_and_can_be_turned_off() -> None:
    assert not engine("secret").check("A SECRET plan", "input", weights_free=True).allowed
    assert engine("secret", ", ignore_case: false, on: original").check("A SECRET plan", "input").allowed
