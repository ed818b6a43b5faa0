"""``rail policy eval`` (measure a policy on labelled rows) and ``rail policy calibrate`` (semantic
thresholds).

Exit codes: 0 the report was written (eval) or the thresholds chosen (calibrate), 2 usage, configuration
or bad-row errors (the line is named). With ``--format json`` stdout carries the JSON report only; the
progress bar goes to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from rail.cli.check import policy_group
from rail.errors import ConfigError
from rail.policy import DEFAULT_POLICY, PolicyEngine, load_policy


@contextmanager
def _progress(total: int, label: str) -> Iterator[Any]:
    """A progress bar on stderr (drawn only when stderr is a terminal); yields ``update(n)``."""
    with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True) as bar:
        yield bar.update


def _write(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    path = Path(output)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write the report: {exc.strerror}", source=output) from None
    click.echo(f"wrote {path}", err=True)


@policy_group.command("eval")
@click.argument("data")
@click.option(
    "--policy",
    "policy_ref",
    default=DEFAULT_POLICY,
    show_default=True,
    help="Policy file, or the name of a packaged policy.",
)
@click.option(
    "--without",
    "without",
    multiple=True,
    metavar="KIND",
    help="Skip every rule of this check kind (repeatable), e.g. --without toxicity.",
)
@click.option("--weights-free", is_flag=True, help="Run only checks that need no model weights.")
@click.option("--format", "fmt", type=click.Choice(["json", "md", "html"]), default="md", show_default=True)
@click.option("-o", "--output", metavar="FILE", help="Write the report to FILE instead of stdout.")
@click.option("--scorer-settings", metavar="FILE", help="Scorer settings YAML (see rail generate).")
@click.option(
    "--batch", type=click.IntRange(1, 1024), default=32, show_default=True, help="Rows screened per batch."
)
def eval_command(
    data: str,
    policy_ref: str,
    without: tuple[str, ...],
    weights_free: bool,
    fmt: str,
    output: str | None,
    scorer_settings: str | None,
    batch: int,
) -> None:
    """Screen the labelled rows of DATA (JSON lines) and report recall, false blocks and clauses named.

    Rows: {"id", "text", "stage": "input"|"output", "expect": "block"|"allow", "clause"?, "lang"?, "tags"?}.
    """
    from rail.policy.evaluation import evaluate, read_rows
    from rail.policy.evaluation_render import html, markdown
    from rail.scoring import ScorerSettings
    from rail.screening import Screening

    rows = read_rows(data)
    policy = load_policy(policy_ref)
    screening = Screening(
        PolicyEngine(policy),
        ScorerSettings.from_env(scorer_settings),
        weights_free=weights_free,
        without=without,
    )
    with _progress(len(rows), "screening") as update:
        report = evaluate(screening, rows, source=data, batch=batch, progress=update)
    if fmt == "json":
        text = json.dumps(report, ensure_ascii=False, indent=2) + "\n"
    elif fmt == "md":
        text = markdown(report)
    else:
        text = html(report)
    _write(text, output)


@policy_group.command("calibrate")
@click.argument("data")
@click.option(
    "--policy",
    "policy_ref",
    default=DEFAULT_POLICY,
    show_default=True,
    help="Policy file, or the name of a packaged policy.",
)
@click.option(
    "--rule", "rule_id", metavar="ID", help="The semantic rule to calibrate (default: the only one)."
)
@click.option(
    "--false-block-weight",
    "weight",
    type=click.FloatRange(min=0, min_open=True),
    default=4.0,
    show_default=True,
    help="How much a false block on an allowed row costs against a missed forbidden row.",
)
@click.option(
    "--shrinkage",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="How strongly each clause's threshold is pulled toward the shared one (in rows).",
)
@click.option(
    "--write",
    is_flag=True,
    help="Write the thresholds into the bank's calibration.yaml (otherwise print them).",
)
def calibrate_command(
    data: str, policy_ref: str, rule_id: str | None, weight: float, shrinkage: float, write: bool
) -> None:
    """Choose the semantic rule's per-clause thresholds on the labelled rows of DATA (JSON lines).

    The embedder is the rule's (or RAIL_EMBEDDER's); its thresholds are stored under its name, next to
    the other embedders' thresholds. Calibrate on a development split, never on the rows you report.
    """
    import yaml

    from rail.policy.calibration import calibrate, write_calibration
    from rail.policy.checks import CheckUnavailable
    from rail.policy.checks.semantic import SemanticCheck
    from rail.policy.evaluation import read_rows

    rows = read_rows(data)
    policy = load_policy(policy_ref)
    semantic = [r for r in policy.rules if isinstance(r.check, SemanticCheck)]
    if rule_id is not None:
        semantic = [r for r in semantic if r.id == rule_id]
    if len(semantic) != 1:
        names = ", ".join(r.id for r in policy.rules if r.kind == "semantic") or "none"
        raise ConfigError(
            f"policy {policy.id} has {'no' if not semantic else 'more than one'} semantic rule"
            + (f" with id {rule_id!r}" if rule_id else ""),
            source=policy.source,
            path="--rule",
            hint=f"semantic rules: {names}",
        )
    rule = semantic[0]
    assert isinstance(rule.check, SemanticCheck)
    try:
        with _progress(len(rows), "scoring") as update:
            result = calibrate(
                rule.check, rows, weight=weight, shrinkage=shrinkage, source=data, progress=update
            )
    except CheckUnavailable as exc:
        raise ConfigError(f"rule {rule.id} cannot run: {exc}", source=policy.source) from None
    if write:
        write_calibration(rule.check.bank.calibration_path, result)
        click.echo(f"wrote thresholds for {result.embedder} to {rule.check.bank.calibration_path}", err=True)
    else:
        click.echo(
            yaml.safe_dump(
                {result.embedder: result.to_dict()},
                sort_keys=False,
                allow_unicode=True,
                default_flow_style=None,
                width=110,
            ),
            nl=False,
        )


COMMANDS: list[click.Command] = []
