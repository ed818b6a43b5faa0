"""``rail card``: validate, render, lint and import model cards, and merge evaluation results into them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rail.errors import ConfigError


@click.group("card")
def card_group() -> None:
    """Model cards as structured YAML: validate, render (md, html, eu-gpai), lint, import, merge evals."""


@card_group.command("validate")
@click.argument("cards", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def validate_command(cards: tuple[Path, ...]) -> None:
    """Check card YAML files against the card schema; exit 2 on the first invalid one."""
    from rail.cards import load_card

    for path in cards:
        card = load_card(path)
        for warning in card.warnings:
            click.echo(f"rail: warning: {warning}", err=True)
        kind = (
            f"{len(card.body)} README sections"
            if card.body is not None
            else f"{len(card.data)} top-level keys"
        )
        click.echo(f"{path}: valid card ({kind}, licence {card.licence_id or 'not stated'})")


@card_group.command("render")
@click.argument("card", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "html", "eu-gpai"]),
    default="md",
    show_default=True,
    help="Hugging Face README, self-contained HTML page, or the EU GPAI Model Documentation Form.",
)
@click.option(
    "--template",
    "template_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of templates that override the built-in ones by file name.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write (written atomically); '-' for standard output.",
)
def render_command(card: Path, fmt: str, template_dir: Path | None, output: Path) -> None:
    """Render CARD to Markdown, HTML or the EU documentation form."""
    from rail.cards import load_card, render_card, write_atomically

    rendered = render_card(load_card(card), fmt, template_dir=template_dir)
    if rendered.appended_licence:
        click.echo(
            "rail: warning: the template left out the licence's use restrictions or notice; "
            "rail appended its licence section",
            err=True,
        )
    _write(output, rendered.text, write_atomically)


@card_group.command("lint")
@click.argument("card", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0),
    default=0.8,
    show_default=True,
    help="Exit 1 when the overall score is below this.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def lint_command(card: Path, threshold: float, as_json: bool) -> None:
    """Score how complete CARD is (Hugging Face, Mitchell et al., EU form); exit 1 below the threshold."""
    from rail.cards import FRAMEWORKS, lint_card, load_card

    report = lint_card(load_card(card))
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "threshold": threshold}, indent=2, ensure_ascii=False))
    else:
        click.echo(f"{card}: completeness {report.score():.0%} (threshold {threshold:.0%})")
        for framework in FRAMEWORKS:
            click.echo(f"  {framework:<12} {report.score(framework):.0%}")
        for item in report.problems:
            click.echo(f"  {item.status:<11} [{item.framework}] {item.item}  (add: {item.suggestion})")
        for where in report.placeholders:
            click.echo(f"  placeholder {where}")
    if report.score() < threshold:
        sys.exit(1)


@card_group.command("import")
@click.argument("readme", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Card YAML to write (written atomically); '-' for standard output.",
)
def import_command(readme: Path, output: Path) -> None:
    """Turn a Hugging Face README (front matter + Markdown) into card YAML."""
    from rail.cards import dump_card, import_card_file, write_atomically

    result = import_card_file(readme)
    for warning in result.warnings:
        click.echo(f"rail: warning: {warning}", err=True)
    _write(output, dump_card(result.card.data), write_atomically)


@card_group.command("merge-eval")
@click.argument("card", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("results", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Card YAML to write (may be CARD itself; written atomically).",
)
def merge_eval_command(card: Path, results: Path, output: Path) -> None:
    """Merge RESULTS (rail-eval-results JSON) into CARD's model-index."""
    from rail.cards import dump_card, load_card, load_results, merge_results, write_atomically

    merged = merge_results(load_card(card), load_results(results))
    _write(output, dump_card(merged.data), write_atomically)


def _write(output: Path, text: str, write_atomically) -> None:  # type: ignore[no-untyped-def]
    if str(output) == "-":
        click.echo(text, nl=False)
        return
    if output.is_dir():
        raise ConfigError("is a directory", source=str(output), hint="name an output file")
    write_atomically(output, text)
    click.echo(f"wrote {output}", err=True)


COMMANDS: list[click.Command] = [card_group]
