"""What "the same card" means for an imported and re-rendered README, and a measurement over the corpus.

A README is the same after ``rail card import`` then ``rail card render --format md`` when:

- **blocks**: the body parsed by markdown-it (CommonMark with tables and raw HTML, as the Hub renders it)
  gives the same sequence of top-level blocks: every heading with its level and inline text, every other
  block (paragraph, list, table, HTML block, fence, code block, rule, quote) with its exact source text, in
  the same order. Only the section rail adds on purpose ("Licence and Use Restrictions", the use
  restrictions of a RAIL licence) is left out of the rendered side before comparing. A setext heading
  rendered as an ATX heading counts as the same heading (same level, same text).
- **metadata**: the rendered front matter reads back, with PyYAML as huggingface_hub reads it, to the data
  the original front matter holds, apart from one deliberate fix: the YAML 1.1 words ``yes``, ``no``,
  ``on``, ``off`` stay text (``language: no`` is Norwegian, as the Hub reads it), so the original is read
  with only ``true``/``false`` as booleans. ``huggingface_hub.ModelCard`` data must match too.

Run ``python -m tests.cards.fidelity`` to print these counts for every card in tests/cards/corpus/ (it
drives the ``rail`` CLI in-process, so it measures whichever rail is importable).
"""

from __future__ import annotations

import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt

CORPUS = Path(__file__).parent / "corpus"
LICENCE_HEADING = "Licence and Use Restrictions"

Block = tuple[str, int, str]

_MD = MarkdownIt("commonmark", {"html": True}).enable("table")


def split_readme(text: str) -> tuple[str | None, str]:
    """Return (front matter YAML or None, body) of a README, the way huggingface_hub splits it."""
    text = text.replace("\r\n", "\n")
    match = re.match(r"^(---\s*\n)([\S\s]*?)(\n---\s*\n|\n---\s*$)", text)
    if match is None:
        return None, text
    return match.group(2), text[match.end() :]


def blocks(body: str) -> tuple[Block, ...]:
    """Return the top-level blocks of Markdown ``body``: ("heading", level, text) or ("<type>", 0, source)."""
    lines = body.split("\n")
    tokens = _MD.parse(body)
    out: list[Block] = []
    for index, token in enumerate(tokens):
        if token.level != 0 or token.nesting == -1 or token.map is None:
            continue
        if token.type == "heading_open":
            out.append(("heading", int(token.tag[1]), tokens[index + 1].content.strip()))
        else:
            start, end = token.map
            out.append((token.type, 0, "\n".join(lines[start:end]).rstrip()))
    return tuple(out)


def without_licence_section(found: tuple[Block, ...]) -> tuple[Block, ...]:
    """Drop rail's "Licence and Use Restrictions" section (its heading and everything up to the next peer)."""
    out: list[Block] = []
    skip_level = 0
    for block in found:
        kind, level, text = block
        if skip_level and kind == "heading" and level <= skip_level:
            skip_level = 0
        if not skip_level and kind == "heading" and text == LICENCE_HEADING:
            skip_level = level
        if not skip_level:
            out.append(block)
    return tuple(out)


class _Yaml12Booleans(yaml.SafeLoader):
    """PyYAML with only true/false as booleans: how rail and the Hub read ``no``, ``yes``, ``on``, ``off``."""


_Yaml12Booleans.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Booleans.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def expected_metadata(front: str | None) -> Any:
    """The original metadata, with the one deliberate fix (YAML 1.1 boolean words stay text)."""
    return yaml.load(front, Loader=_Yaml12Booleans) if front else None


def hub_metadata(front: str | None) -> Any:
    """The metadata as huggingface_hub reads it (PyYAML ``safe_load``)."""
    return yaml.safe_load(front) if front else None


def model_card_data(text: str) -> dict[str, Any]:
    """``huggingface_hub.ModelCard(...).data.to_dict()`` of a README (metadata errors downgraded)."""
    from huggingface_hub import ModelCard

    return ModelCard(text, ignore_metadata_errors=True).data.to_dict()


@dataclass(frozen=True)
class Fidelity:
    """How one README came back: imported at all, headings, blocks and metadata kept."""

    name: str
    imported: bool
    headings: bool = False
    blocks: bool = False
    metadata: bool = False
    card_data: bool = False
    error: str = ""


def measure(readme: Path, workdir: Path) -> Fidelity:
    """Import ``readme`` with the rail CLI, render it as Markdown, and compare it with the original."""
    from click.testing import CliRunner

    from rail.cli import main

    card, out = workdir / f"{readme.stem}.yaml", workdir / f"{readme.stem}.md"
    runner = CliRunner()
    imported = runner.invoke(main, ["card", "import", str(readme), "-o", str(card)])
    if imported.exit_code != 0:
        return Fidelity(readme.stem, False, error=_last_line(imported.output))
    rendered = runner.invoke(main, ["card", "render", str(card), "--format", "md", "-o", str(out)])
    if rendered.exit_code != 0:
        return Fidelity(readme.stem, False, error=_last_line(rendered.output))
    original_text = readme.read_text(encoding="utf-8")
    rendered_text = out.read_text(encoding="utf-8")
    front, body = split_readme(original_text)
    new_front, new_body = split_readme(rendered_text)
    before, after = blocks(body), without_licence_section(blocks(new_body))
    heads = [b for b in before if b[0] == "heading"]
    return Fidelity(
        readme.stem,
        True,
        headings=heads == [b for b in after if b[0] == "heading"],
        blocks=before == after,
        metadata=(expected_metadata(front) or {}) == (hub_metadata(new_front) or {}),
        card_data=model_card_data(_fixed(original_text)) == model_card_data(rendered_text),
    )


def _fixed(text: str) -> str:
    """The original README with the deliberate fix applied, for comparing huggingface_hub's view of it."""
    front, body = split_readme(text)
    if front is None:
        return text
    fixed = yaml.safe_dump(expected_metadata(front), sort_keys=False, allow_unicode=True)
    return f"---\n{fixed}---\n{body}"


def _last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def main() -> int:
    """Print, for the corpus, how many cards import, keep every heading, every block and the metadata."""
    readmes = sorted(CORPUS.glob("*.md"))
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure(p, Path(tmp)) for p in readmes]
    total = len(results)
    for label, attr in (
        ("import and render", "imported"),
        ("keep every heading, in order", "headings"),
        ("keep every block, in order", "blocks"),
        ("keep the metadata (PyYAML)", "metadata"),
        ("keep huggingface_hub ModelCard data", "card_data"),
    ):
        print(f"{sum(getattr(r, attr) for r in results):3d}/{total} {label}")
    for r in results:
        if not (r.imported and r.blocks and r.metadata and r.card_data):
            flags = (
                "" if not r.imported else f" headings={r.headings} blocks={r.blocks} metadata={r.metadata}"
            )
            print(f"  {r.name}: {r.error or flags.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
