"""``rail check`` (screen text against a policy) and ``rail policy validate|explain``.

Exit codes: 0 everything allowed (or the policy is valid), 1 something blocked (or a clause has no control),
2 usage or configuration errors.
"""

from __future__ import annotations

import json
import sys
import textwrap
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from rail.cli.jsonl import read_objects, read_text_input
from rail.errors import ConfigError
from rail.policy import DEFAULT_POLICY, Decision, Policy, PolicyEngine, load_policy

_STAGES = click.Choice(["input", "output"])


def _visible(text: str) -> str:
    """Show invisible format characters (zero-width, bidi) as escapes so a reader sees them."""
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cf", "Cc") else c for c in text)


def _read_jsonl(path: str) -> list[tuple[Any, str, str | None]]:
    items = []
    for number, obj in read_objects(path, example='{"id": "1", "text": "Why is the sky blue?"}'):
        if "id" not in obj or not isinstance(obj.get("text"), str):
            raise ConfigError(
                f"line {number} needs an object with 'id' and a string 'text'",
                source=path,
                line=number,
                hint='e.g. {"id": "1", "text": "Why is the sky blue?"}',
            )
        stage = obj.get("stage")
        if stage is not None and stage not in ("input", "output"):
            raise ConfigError(
                f"line {number}: stage must be 'input' or 'output', not {stage!r}",
                source=path,
                line=number,
            )
        items.append((obj["id"], obj["text"], stage))
    return items


def cited(clauses: Sequence[str]) -> str:
    """Name every clause a violation cites: ``clause (k)``, ``clauses (k), (i)`` or ``no clause``."""
    if not clauses:
        return "no clause"
    word = "clause" if len(clauses) == 1 else "clauses"
    return f"{word} " + ", ".join(f"({c})" for c in clauses)


def _human(decision: Decision, text: str, stage: str, policy_id: str) -> str:
    lines = [f"{decision.verdict.value.upper()}  ({policy_id}, stage {stage})"]
    for v in decision.violations:
        clause = cited(v.clauses or ((v.restriction,) if v.restriction else ()))
        lines.append(f"  - {v.rule}  {clause}  {v.action.value}  {v.severity}: {v.reason}")
        if v.span:
            lines.append(f'      at {v.span[0]}-{v.span[1]}: "{_visible(text[v.span[0] : v.span[1]])}"')
    if decision.verdict.value == "modified":
        lines.append(f"  text: {_visible(decision.text)}")
    if decision.skipped:
        lines.append(f"  skipped (need model weights): {', '.join(decision.skipped)}")
    return "\n".join(lines)


def _result(decision: Decision, stage: str) -> dict[str, Any]:
    out = decision.to_dict()
    out["stage"] = stage
    if decision.verdict.value == "modified":
        out["text"] = decision.text
    return out


@click.command("check")
@click.argument("text", required=False)
@click.option(
    "--policy",
    "policy_ref",
    default=DEFAULT_POLICY,
    show_default=True,
    help="Policy file, or the name of a packaged policy.",
)
@click.option(
    "--stage",
    type=_STAGES,
    default="input",
    show_default=True,
    help="Check TEXT as a prompt (input) or a model output (output).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a readable report.")
@click.option(
    "--jsonl",
    "jsonl",
    metavar="FILE",
    help="Check each line of FILE ('-' for stdin): objects with id, text and optional stage.",
)
@click.option(
    "--weights-free",
    is_flag=True,
    help="Run only checks that need no model weights; the output names the checks skipped.",
)
@click.option(
    "--without",
    "without",
    multiple=True,
    metavar="KIND",
    help="Skip every rule of this check kind (repeatable), e.g. --without toxicity; they are listed "
    "under skipped.",
)
@click.option("--scorer-settings", metavar="FILE", help="Scorer settings YAML (see rail generate).")
def check_command(
    text: str | None,
    policy_ref: str,
    stage: str,
    as_json: bool,
    jsonl: str | None,
    weights_free: bool,
    without: tuple[str, ...],
    scorer_settings: str | None,
) -> None:
    """Check TEXT (or '-' for stdin) against a policy; exit 0 if allowed, 1 if blocked, 2 on errors."""
    from rail.scoring import ScorerSettings
    from rail.screening import Screening

    if jsonl is not None and text is not None:
        raise click.UsageError("give either TEXT or --jsonl FILE, not both")
    if jsonl is None and text is None:
        raise click.UsageError("give the TEXT to check ('-' reads stdin), or --jsonl FILE")
    policy = load_policy(policy_ref)
    screening = Screening(
        PolicyEngine(policy), ScorerSettings.from_env(scorer_settings), weights_free=weights_free,
        without=without,
    )
    items: list[tuple[Any, str, str | None]]
    if jsonl is not None:
        items = _read_jsonl(jsonl)
    else:
        body = read_text_input(sys.stdin.buffer) if text == "-" or text is None else text
        items = [(None, body, stage)]
    stages = [item_stage or stage for _, _, item_stage in items]
    decisions: list[Decision | None] = [None] * len(items)
    for each_stage in dict.fromkeys(stages):
        indexes = [i for i, s in enumerate(stages) if s == each_stage]
        for i, screened in zip(indexes, screening.screen([items[i][1] for i in indexes], each_stage),
                               strict=True):
            decisions[i] = screened.decision
    blocked = False
    for (item_id, body, _), item_stage, decision in zip(items, stages, decisions, strict=True):
        assert decision is not None
        blocked = blocked or not decision.allowed
        if jsonl is not None:
            click.echo(json.dumps({"id": item_id, **_result(decision, item_stage)}, ensure_ascii=False))
        elif as_json:
            result = _result(decision, item_stage)
            result["policy"] = {"id": policy.id, "version": policy.version, "sha256": policy.sha256}
            click.echo(json.dumps(result, ensure_ascii=False, indent=2))
        else:
            click.echo(_human(decision, body, item_stage, policy.id))
    sys.exit(1 if blocked else 0)


@click.group("policy")
def policy_group() -> None:
    """Validate a policy file or print its coverage of the licence clauses."""


@policy_group.command("validate")
@click.argument("file")
def validate_command(file: str) -> None:
    """Validate FILE (or a packaged policy name); exit 0 if valid, 2 with the problem otherwise."""
    policy = load_policy(file)
    click.echo(
        f"ok: {policy.source}: policy {policy.id} {policy.version}, {len(policy.rules)} rules, "
        f"licence {policy.licence}, sha256 {policy.sha256}"
    )


@policy_group.command("explain")
@click.argument("file", required=False, default=DEFAULT_POLICY)
@click.option("--json", "as_json", is_flag=True, help="Print the matrix as JSON.")
def explain_command(file: str, as_json: bool) -> None:
    """Print the coverage matrix of FILE clause by clause, with how rail reads each clause; exit 1 if a clause
    has no control."""
    from rail.policy.coverage import coverage

    policy = load_policy(file)
    rows, others = coverage(policy)
    gaps = [row.clause for row in rows if not row.covered]
    readings = _readings(policy)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "policy": policy.id,
                    "version": policy.version,
                    "licence": policy.licence,
                    "sha256": policy.sha256,
                    "clauses": [r.to_dict() for r in rows],
                    "other_controls": [c.to_dict() for c in others],
                    "gaps": gaps,
                    "readings": readings,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        sys.exit(1 if gaps else 0)
    click.echo(f"{policy.id} {policy.version} — coverage of {policy.licence}")
    for row in rows:
        short = row.text if len(row.text) <= 90 else row.text[:87].rstrip() + "..."
        click.echo(f"\n({row.clause}) {short}")
        if not row.covered:
            click.echo("    NO CONTROL — this clause is not covered by the policy")
        for c in row.controls:
            click.echo(f"    {c.name:<36} {', '.join(c.modes):<45} stages: {', '.join(c.stages)}")
        if row.clause in readings:
            reading = readings[row.clause]
            text = f"how rail reads it ({reading['bank']}): {reading['reading']}"
            click.echo(textwrap.fill(text, width=108, initial_indent="    ", subsequent_indent="      "))
    if others:
        click.echo("\nControls citing no licence clause:")
        for c in others:
            ref = f"  [{c.reference}]" if c.reference else ""
            click.echo(f"    {c.name:<36} {', '.join(c.modes):<45} stages: {', '.join(c.stages)}{ref}")
    click.echo(
        f"\n{len(rows) - len(gaps)}/{len(rows)} clauses covered"
        + (f"; gaps: {', '.join(gaps)}" if gaps else "")
    )
    sys.exit(1 if gaps else 0)


def _readings(policy: Policy) -> dict[str, dict[str, str]]:
    """Each clause's reading from the exemplar banks of the policy's semantic rules (first bank wins)."""
    from rail.policy.checks.semantic import SemanticCheck

    out: dict[str, dict[str, str]] = {}
    for rule in policy.rules:
        if isinstance(rule.check, SemanticCheck):
            bank = rule.check.bank
            for clause, reading in bank.readings.items():
                out.setdefault(
                    clause,
                    {
                        "title": reading.title,
                        "reading": reading.reading,
                        "bank": Path(bank.path).name,
                        "source": reading.source,
                    },
                )
    return out


COMMANDS: list[click.Command] = [check_command, policy_group]
