"""Render an evaluation report (:func:`rail.policy.evaluation.evaluate`) as Markdown or one HTML page.

The HTML page (templates ``rail/data/evaluation*.html.j2``) is self-contained: the threshold sweeps are
drawn with matplotlib's Agg backend and embedded as SVG data URIs; no network, CSS or JavaScript from
elsewhere. Row texts are escaped.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

import jinja2
from markupsafe import Markup

from rail._version import __version__
from rail.resources import data_dir

__all__ = ["html", "markdown"]

_WIDE_IN = 10.4


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def _md(text: Any) -> str:
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _short(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _group_lines(title: str, groups: Mapping[str, Any]) -> list[str]:
    lines = [
        f"## {title}",
        "",
        "| | forbidden rows | blocked (recall) | allowed rows | false blocks |",
        "|---|---:|---:|---:|---:|",
    ]
    names = sorted(set(groups["forbidden"]) | set(groups["allowed"]))
    for name in names:
        f = groups["forbidden"].get(name, {})
        a = groups["allowed"].get(name, {})
        lines.append(
            f"| {_md(name)} | {f.get('rows', 0)} | {f.get('blocked', 0)} ({_pct(f.get('rate'))}) | "
            f"{a.get('rows', 0)} | {a.get('blocked', 0)} ({_pct(a.get('rate'))}) |"
        )
    return [*lines, ""]


def _row_lines(title: str, rows: list[Mapping[str, Any]]) -> list[str]:
    lines = [f"## {title} ({len(rows)})", ""]
    if not rows:
        return [*lines, "None.", ""]
    lines += ["| id | stage | lang | expected | named | text |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {_md(r['id'])} | {r['stage']} | {_md(r['lang'] or '')} | {_md(r['clause'] or r['expect'])} "
            f"| {_md(r['named'] or '–')} | {_md(_short(r['text']))} |"
        )
    return [*lines, ""]


def markdown(report: Mapping[str, Any]) -> str:
    """Return the report as Markdown: the summary, tables by clause, language, tag, and the rows missed."""
    s = report["summary"]
    p = report["policy"]
    layers = report["by_layer"]
    lines = [
        f"# Evaluation — {_md(report['data']['file'] or 'rows')}",
        "",
        f"Policy {_md(p['id'])} {_md(p['version'])} (sha256 {p['sha256'][:12]}…)"
        + (f", without {', '.join(report['without'])}" if report["without"] else "")
        + (", weights-free" if report["weights_free"] else "")
        + f"; rail {__version__}.",
        "",
        f"- rows: {s['rows']} ({s['forbidden']} to block, {s['allowed']} to allow)",
        f"- **recall** (forbidden rows blocked): {_pct(s['recall'])}",
        f"- **false-block rate** (allowed rows blocked): {_pct(s['false_block_rate'])}",
        f"- **right clause** (blocked and the expected clause named first): {_pct(s['right_clause'])} "
        f"({_pct(s['right_clause_of_blocked'])} of the blocked)",
        f"- blocked by layer: lexical only {layers['lexical']}, semantic only {layers['semantic']}, "
        f"both {layers['both']}, other {layers['other']}",
        "",
        "## By clause",
        "",
        "| clause | rows | blocked | recall | right clause |",
        "|---|---:|---:|---:|---:|",
    ]
    for clause, c in report["by_clause"].items():
        lines.append(
            f"| ({_md(clause)}) | {c['rows']} | {c['blocked']} | {_pct(c['rate'])} | "
            f"{_pct(c['right_clause'] / c['rows'] if c['rows'] else None)} |"
        )
    lines.append("")
    lines += _group_lines("By language", report["by_language"])
    lines += _group_lines("By tag", report["by_tag"])
    lines += _group_lines("By stage", report["by_stage"])
    lines += ["## Confusion (expected clause → named)", ""]
    for expected, named in report["confusion"].items():
        lines.append(
            f"- ({_md(expected)}): "
            + ", ".join(f"{_md(k)} {v}" for k, v in sorted(named.items(), key=lambda kv: -kv[1]))
        )
    lines.append("")
    lines += _row_lines("Misses", report["misses"])
    lines += _row_lines("False blocks", report["false_blocks"])
    lines += _row_lines("Wrong clause", report["wrong_clause"])
    return "\n".join(lines) + "\n"


def _svg(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _charts(report: Mapping[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    charts: dict[str, str] = {}
    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.family": "sans-serif",
        }
    ):
        for stage, by_clause in report["sweep"].items():
            clauses = sorted(by_clause)
            columns = 5
            nrows = -(-len(clauses) // columns)
            fig = Figure(figsize=(_WIDE_IN, 2.0 * nrows + 0.6))
            axes = fig.subplots(nrows, columns, squeeze=False)
            for index, ax in enumerate(axes.flat):
                if index >= len(clauses):
                    ax.set_visible(False)
                    continue
                clause = clauses[index]
                sweep = by_clause[clause]
                ax.plot(
                    sweep["false_block_rate"], sweep["recall"], color="#3465a4", linewidth=1.4, label="recall"
                )
                ax.plot(
                    sweep["false_block_rate"],
                    sweep["precision"],
                    color="#8f5902",
                    linewidth=1.0,
                    linestyle=":",
                    label="precision",
                )
                if sweep["current"] is not None:
                    cuts = sweep["thresholds"]
                    k = min(range(len(cuts)), key=lambda j: abs(cuts[j] - sweep["current"]))
                    ax.plot(
                        [sweep["false_block_rate"][k]],
                        [sweep["recall"][k]],
                        "o",
                        color="#c62828",
                        markersize=5,
                        label="threshold in force",
                    )
                ax.set_title(
                    f"({clause})  {sweep['positives']} to block / {sweep['negatives']} to allow", fontsize=8
                )
                ax.set_xlim(-0.02, 1.0)
                ax.set_ylim(0, 1.03)
                ax.set_xscale("symlog", linthresh=0.05)
                ax.set_xticks([0, 0.02, 0.05, 0.2, 1.0], ["0", ".02", ".05", ".2", "1"])
            handles, names = axes.flat[0].get_legend_handles_labels()
            fig.legend(handles, names, frameon=False, ncols=3, loc="upper right", fontsize=8)
            fig.supxlabel("false-block rate on rows to allow (as the threshold falls →)", fontsize=9)
            fig.supylabel("share of rows to block", fontsize=9)
            fig.tight_layout(rect=(0, 0, 1, 0.95))
            charts[stage] = _svg(fig)
    return charts


def _template(env: jinja2.Environment, name: str) -> jinja2.Template:
    return env.from_string(data_dir("rail.data").joinpath(name).read_text(encoding="utf-8"))


def html(report: Mapping[str, Any]) -> str:
    """Return the report as one self-contained HTML page with the threshold sweeps drawn in."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    groups_template = _template(env, "evaluation-groups.html.j2")

    def groups(g: Mapping[str, Any]) -> Any:
        names = sorted(set(g["forbidden"]) | set(g["allowed"]))
        return Markup(groups_template.render(g=g, names=names, pct=_pct))

    def shade(value: int, expected: str, column: str, row: Mapping[str, int]) -> str:
        if not value:
            return "transparent"
        share = value / max(sum(row.values()), 1)
        colour = "46, 125, 50" if column == expected else "198, 40, 40"
        return f"rgba({colour}, {0.12 + 0.6 * share:.2f})"

    named = sorted({c for row in report["confusion"].values() for c in row} - {"allowed", "no clause"})
    named += [c for c in ("no clause", "allowed") if any(c in row for row in report["confusion"].values())]
    return _template(env, "evaluation.html.j2").render(
        r=report,
        s=report["summary"],
        pct=_pct,
        charts=_charts(report),
        groups=groups,
        shade=shade,
        named_columns=named,
        version=__version__,
    )
