"""Render an audit report dict as Markdown or as one self-contained, printable HTML page.

Charts are drawn with matplotlib's Agg backend and embedded as SVG data URIs, so the page needs no network,
no external CSS or JavaScript, and stays sharp when printed. Everything a reader compares is written the same
way in every format: counts with thousands separators, times as ``2025-03-01 08:00:00 UTC``, clauses as
``clause (l)``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import jinja2

__all__ = ["html", "markdown"]

_VERDICT_COLOURS = {"allowed": "#2e7d32", "modified": "#e0a100", "blocked": "#c62828"}
_STAGE_COLOURS = {"prompt": "#3465a4", "output": "#8f5902"}
#: Width of full-width charts: the page's content width at 96 px per inch, so text is drawn at 1:1.
_WIDE_IN = 10.4
#: Detoxify's label names as a person reads them.
_LABELS = {"toxicity": "Toxicity", "severe_toxicity": "Severe toxicity", "threat": "Threat",
           "identity_attack": "Identity attack", "insult": "Insult", "obscene": "Obscene",
           "sexual_explicit": "Sexually explicit"}
#: Every chart the page can show; a period without the data behind one renders its "none" text instead.
_CHARTS = ("timeline", "blocks_by_clause", "blocks_by_rule", "languages", "toxicity", "semantic")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def _n(value: int | float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _when(text: str | None) -> str:
    """Return an ISO 8601 time as ``2025-03-01 08:00:00 UTC``, the form every part of the report uses."""
    if not text:
        return "–"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _clause(letter: str) -> str:
    return "no clause" if letter == "(no clause)" else f"clause ({letter})"


def _label(name: str) -> str:
    return _LABELS.get(name, name.replace("_", " ").capitalize())


def _md_escape(text: Any) -> str:
    # Names come from the log, which anyone able to write it controls: Markdown renderers pass raw HTML
    # through, so <, > and & are escaped as well as the table separator.
    text = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _unreadable(integrity: Mapping[str, Any]) -> str | None:
    count = integrity.get("unreadable") or 0
    if not count:
        return None
    listed = ", ".join(str(seq) for seq in integrity.get("unreadable_records") or ())
    more = "…" if count > len(integrity.get("unreadable_records") or ()) else ""
    return (f"{count:,} record(s) could not be read and are left out of every figure below "
            f"(records {listed}{more})")


def _clause_text(text: str | None) -> str:
    return text or "(clause text not available)"


def _period(report: Mapping[str, Any]) -> tuple[str, str]:
    period = report["period"]
    return _when(period["since"] or period["first"]), _when(period["until"] or period["last"])


_Stats = Mapping[str, Any]


def _score_rows(section: Mapping[str, Any]) -> list[tuple[str, _Stats | None, _Stats | None]]:
    """Return (label, prompt stats, output stats) in the report's order (prompt's labels first)."""
    labels = list(section["prompt"]) + [k for k in section["output"] if k not in section["prompt"]]
    return [(label, section["prompt"].get(label), section["output"].get(label)) for label in labels]


def markdown(report: Mapping[str, Any]) -> str:
    """Return the report as Markdown tables, integrity verdict and warnings first."""
    integrity = report["integrity"]
    lines = [f"# Audit report — {_md_escape(report['log'])}", "",
             f"**Integrity: {'INTACT' if integrity['ok'] else 'TAMPERED'}** — "
             f"{_md_escape(integrity['summary'])}",
             ""]
    unreadable = _unreadable(integrity)
    if unreadable:
        lines.append(f"- **{_md_escape(unreadable)}**")
    for note in integrity["notes"]:
        lines.append(f"- {_md_escape(note)}")
    for warning in report.get("warnings", ()):
        lines.append(f"- **Warning:** {_md_escape(warning)}")
    start, end = _period(report)
    lines += ["", f"Period: {start} to {end} · generated {_when(report['generated'])} by rail "
              f"{report['rail_version']}", ""]
    req = report["requests"]
    lines += ["## Decisions", "", "| verdict | requests |", "|---|---:|"]
    lines += [f"| {v} | {_n(req[v])} |" for v in ("allowed", "modified", "blocked")]
    lines += [f"| **total** | **{_n(req['total'])}** |", ""]

    timeline = report["timeline"]
    lines += [f"## Requests per {timeline['bucket']}", "",
              "| period | allowed | modified | blocked | total |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['period']} | {_n(r['allowed'])} | {_n(r['modified'])} | {_n(r['blocked'])} | "
              f"{_n(r['total'])} |" for r in timeline["rows"]]

    lines += ["", "## Blocks by clause", "", "| clause | blocked requests |", "|---|---:|"]
    lines += [f"| {_md_escape(_clause(k))} | {_n(v)} |" for k, v in report["blocks_by_clause"].items()] \
        or ["| – | 0 |"]
    lines += ["", "## Blocks by rule", "", "| rule | blocked requests |", "|---|---:|"]
    lines += [f"| {_md_escape(k)} | {_n(v)} |" for k, v in report["blocks_by_rule"].items()] or ["| – | 0 |"]

    tox = report["toxicity"]
    lines += ["", "## Toxicity scores", "", f"Flagged = probability ≥ {tox['flag_at']}.", "",
              "| label | text | scored | mean | max | flagged |", "|---|---|---:|---:|---:|---:|"]
    for label, prompt, output in _score_rows(tox):
        for stage, s in (("prompt", prompt), ("output", output)):
            if s is not None:
                lines.append(f"| {_md_escape(label)} | {stage} | {_n(s['count'])} | {s['mean']:.3f} | "
                             f"{s['max']:.3f} | {_n(s['flagged'])} ({_pct(s['flagged_share'])}) |")
    semantic = report.get("semantic") or {"prompt": {}, "output": {}}
    if semantic["prompt"] or semantic["output"]:
        lines += ["", "## Semantic screening scores by clause", "", _SEMANTIC_NOTE, "",
                  "| clause | text | scored | mean | max | fired |", "|---|---|---:|---:|---:|---:|"]
        for letter, prompt, output in _score_rows(semantic):
            for stage, s in (("prompt", prompt), ("output", output)):
                if s is not None:
                    lines.append(f"| ({_md_escape(letter)}) | {stage} | {_n(s['count'])} | {s['mean']:.3f} | "
                                 f"{s['max']:.3f} | {_n(s['flagged'])} ({_pct(s['flagged_share'])}) |")

    lines += ["", "## Requests by language", "", "| language | requests |", "|---|---:|"]
    lines += [f"| {_md_escape(k)} | {_n(v)} |" for k, v in report["languages"].items()]

    att = report["attribution"]
    lines += ["", "## Attribution coverage", "", f"Outputs passed to users: {_n(att['passed_outputs'])}", "",
              "| attribution | outputs | share |", "|---|---:|---:|",
              f"| visible disclosure | {_n(att['with_disclosure'])} | {_pct(att['disclosure_share'])} |",
              f"| provenance record | {_n(att['with_provenance'])} | {_pct(att['provenance_share'])} |",
              f"| watermark | {_n(att['with_watermark'])} | {_pct(att['watermark_share'])} |"]

    for matrix in report["compliance"]:
        licence = matrix["licence"] or "no licence recorded"
        lines += ["", f"## Compliance matrix — policy {_md_escape(matrix['policy_id'])} "
                  f"({_md_escape(licence)})", "",
                  "| clause | restriction | controls (rule: fired / blocked) | fired | blocked requests |",
                  "|---|---|---|---:|---:|"]
        for row in matrix["clauses"]:
            controls = "; ".join(f"{c['rule']}: {_n(c['fired'])} / {_n(c['blocked'])}"
                                 for c in row["controls"])
            lines.append(f"| ({_md_escape(row['clause'])}) | {_md_escape(_clause_text(row['text']))} | "
                         f"{_md_escape(controls) or '**no control**'} | {_n(row['fired'])} | "
                         f"{_n(row['blocks'])} |")
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {_md_escape(n)}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def _svg(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _timeline_chart(rows: list[Mapping[str, Any]]) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_WIDE_IN, 2.8), layout="constrained")
    ax = fig.subplots()
    bottom = [0] * len(rows)
    for verdict, colour in _VERDICT_COLOURS.items():
        values = [r[verdict] for r in rows]
        ax.bar(range(len(rows)), values, bottom=bottom, color=colour, label=verdict, width=0.8)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    step = max(1, len(rows) // 12)
    ax.set_xticks(range(0, len(rows), step), [r["period"] for r in rows][::step], rotation=30, ha="right")
    ax.set_ylabel("requests")
    ax.yaxis.set_major_formatter("{x:,.0f}")
    ax.legend(frameon=False, ncols=3, loc="lower left", bbox_to_anchor=(0, 1.0))
    return _svg(fig)


def _bar_chart(items: list[tuple[str, int]], xlabel: str, colour: str) -> str:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    items = items[:15][::-1]
    fig = Figure(figsize=(3.6, 0.35 * len(items) + 0.9), layout="constrained")
    ax = fig.subplots()
    ax.barh([name for name, _ in items], [value for _, value in items], color=colour)
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    ax.xaxis.set_major_formatter("{x:,.0f}")
    return _svg(fig)


def _toxicity_chart(tox: Mapping[str, Any]) -> str:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = _score_rows(tox)
    columns = 4
    nrows = -(-len(rows) // columns)
    fig = Figure(figsize=(_WIDE_IN, 2.0 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, columns, squeeze=False)
    bounds = [i / tox["bins"] for i in range(tox["bins"] + 1)]
    for index, ax in enumerate(axes.flat):
        if index >= len(rows):
            ax.set_visible(False)
            continue
        label, prompt, output = rows[index]
        if prompt is not None:
            ax.stairs(prompt["histogram"], bounds, fill=True, color=_STAGE_COLOURS["prompt"], alpha=0.35)
        if output is not None:
            # An outline over the filled prompt histogram, so both stay readable where they overlap.
            ax.stairs(output["histogram"], bounds, color=_STAGE_COLOURS["output"], linewidth=1.5)
        ax.set_title(_label(label), fontsize=9)
        ax.set_yscale("symlog", linthresh=1)
        ax.axvline(tox["flag_at"], color="#555", linewidth=0.7, linestyle="--")
        ax.set_xlim(0, 1)
        ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
        ax.tick_params(labelsize=8)
    handles = [Patch(facecolor=_STAGE_COLOURS["prompt"], alpha=0.35, label="prompts"),
               Line2D([], [], color=_STAGE_COLOURS["output"], linewidth=1.5, label="outputs"),
               Line2D([], [], color="#555", linewidth=0.7, linestyle="--", label=f"flag at {tox['flag_at']}")]
    fig.legend(handles=handles, frameon=False, ncols=3, loc="outside upper left", fontsize=8)
    fig.supxlabel("probability", fontsize=9)
    fig.supylabel("texts (log scale)", fontsize=9)
    return _svg(fig)


_SEMANTIC_NOTE = ("A score above 0 means a text is closer to what the clause forbids than to anything the "
                  "bank allows; a clause fires at its calibrated threshold (marked in red where the records "
                  "name it). Fired counts the texts whose record names the clause in a semantic violation.")


def _semantic_chart(semantic: Mapping[str, Any]) -> str:
    import matplotlib
    import numpy
    from matplotlib.colors import ListedColormap, LogNorm
    from matplotlib.figure import Figure

    # Blues without its near-white end, so a cell holding one text is visibly tinted; empty cells stay white.
    cmap = ListedColormap(matplotlib.colormaps["Blues"](numpy.linspace(0.2, 1.0, 256)))

    letters = sorted(set(semantic["prompt"]) | set(semantic["output"]))
    stages = [stage for stage in ("prompt", "output") if semantic[stage]]
    bins = semantic["bins"]
    grids = {stage: [[float(v) if v else float("nan") for v in semantic[stage][letter]["histogram"]]
                     if letter in semantic[stage] else [float("nan")] * bins for letter in letters]
             for stage in stages}
    peak = max((v for grid in grids.values() for row in grid for v in row if v == v), default=1.0)
    fig = Figure(figsize=(_WIDE_IN, 0.26 * len(letters) + 1.2), layout="constrained")
    axes = fig.subplots(1, len(stages), squeeze=False, sharey=True)
    image = None
    low, high = semantic.get("range", (-1.0, 1.0))
    thresholds = semantic.get("thresholds") or {}
    for ax, stage in zip(axes.flat, stages, strict=True):
        image = ax.imshow(grids[stage], aspect="auto", cmap=cmap, norm=LogNorm(vmin=1, vmax=max(peak, 2)),
                          extent=(low, high, len(letters) - 0.5, -0.5), interpolation="nearest")
        ax.set_title(f"{stage}s", fontsize=9)
        ax.set_yticks(range(len(letters)), [f"clause ({letter})" for letter in letters], fontsize=8)
        ticks = numpy.linspace(low, high, 5)
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=8)
        ax.axvline(0.0, color="#757575", linewidth=0.6, linestyle=":")
        for row, letter in enumerate(letters):
            at = (thresholds.get(stage) or {}).get(letter)
            if at is not None:
                ax.plot([at, at], [row - 0.45, row + 0.45], color="#c62828", linewidth=1.2)
        ax.set_xlabel("semantic score", fontsize=9)
    if image is not None:
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.9, pad=0.01)
        bar.set_label("texts (log scale)", fontsize=8)
        bar.ax.tick_params(labelsize=8)
    return _svg(fig)


def _charts(report: Mapping[str, Any]) -> dict[str, str | None]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    style = {"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
             "font.family": "sans-serif"}
    charts: dict[str, str | None] = dict.fromkeys(_CHARTS)
    with matplotlib.rc_context(style):  # type: ignore[arg-type]
        if report["timeline"]["rows"]:
            charts["timeline"] = _timeline_chart(report["timeline"]["rows"])
        if report["blocks_by_clause"]:
            charts["blocks_by_clause"] = _bar_chart(
                [(_clause(k), v) for k, v in report["blocks_by_clause"].items()], "blocked requests",
                "#c62828")
        if report["blocks_by_rule"]:
            charts["blocks_by_rule"] = _bar_chart(list(report["blocks_by_rule"].items()), "blocked requests",
                                                  "#c62828")
        if report["languages"]:
            charts["languages"] = _bar_chart(list(report["languages"].items()), "requests", "#3465a4")
        if report["toxicity"]["prompt"] or report["toxicity"]["output"]:
            charts["toxicity"] = _toxicity_chart(report["toxicity"])
        semantic = report.get("semantic")
        if semantic and (semantic["prompt"] or semantic["output"]):
            charts["semantic"] = _semantic_chart(semantic)
    return charts


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Audit report — {{ r.log }}</title>
<style>
  :root { --ok: #1b5e20; --bad: #b71c1c; --warn: #8a5a00; --muted: #5f6368; --rule: #d7d7d7; }
  * { box-sizing: border-box; }
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
         color: #1f1f1f; max-width: 1080px; margin: 0 auto; padding: 24px 32px 48px; }
  h1 { font-size: 22px; margin: 0 0 6px; }
  h2 { font-size: 16px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--rule); }
  .meta { color: var(--muted); font-size: 12px; margin: 0 0 16px; display: grid;
          grid-template-columns: max-content 1fr; gap: 1px 12px; }
  .meta dt { font-weight: 600; } .meta dd { margin: 0; }
  .path { overflow-wrap: anywhere; } .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
  .nowrap, time { white-space: nowrap; }
  .verdict, .warning { border-radius: 6px; padding: 12px 16px; margin: 8px 0 4px; border: 2px solid; }
  .verdict.ok { border-color: var(--ok); background: #e8f5e9; }
  .verdict.bad { border-color: var(--bad); background: #ffebee; }
  .verdict strong { font-size: 18px; display: block; }
  .verdict.ok strong { color: var(--ok); } .verdict.bad strong { color: var(--bad); }
  .verdict ul { margin: 6px 0 0; padding-left: 18px; font-size: 13px; }
  .warning { border-color: #e0a100; background: #fff8e1; font-size: 13px; }
  .warning strong { color: var(--warn); }
  .cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin: 12px 0; }
  .card { border: 1px solid var(--rule); border-radius: 6px; padding: 10px 12px; }
  .card .n { font-size: 22px; font-weight: 600; white-space: nowrap; font-variant-numeric: tabular-nums; }
  .card .l { color: var(--muted); font-size: 12px; }
  .allowed { color: #2e7d32; } .modified { color: #9a6b00; } .blocked { color: #c62828; }
  .grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; align-items: start; }
  table { border-collapse: collapse; width: 100%; font-size: 13px; margin: 6px 0; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--rule); vertical-align: top; }
  th { background: #f4f4f4; font-weight: 600; }
  td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  th.group { text-align: center; border-bottom: 0; }
  .none { color: var(--bad); font-weight: 600; }
  .clause { color: var(--muted); font-size: 12px; }
  .controls { list-style: none; margin: 0; padding: 0; }
  .controls li { display: flex; justify-content: space-between; align-items: baseline; gap: 10px; }
  .controls li + li { margin-top: 3px; }
  .coverage { color: var(--muted); font-size: 12px; white-space: nowrap; }
  .count { white-space: nowrap; font-variant-numeric: tabular-nums; }
  img.chart { max-width: 100%; height: auto; display: block; margin: 4px 0; }
  .notes li { color: var(--muted); }
  .empty { color: var(--muted); font-style: italic; }
  @media print {
    body { max-width: none; padding: 0; font-size: 11px; }
    h2 { break-after: avoid; }
    table, img.chart, .verdict, .warning, .cards { break-inside: avoid; }
    .verdict.ok, .verdict.bad, .warning, th { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
    @page { margin: 14mm; }
  }
</style>
</head>
<body>
<h1>Audit report</h1>
<dl class="meta">
  <dt>Log</dt><dd class="path">{{ r.log }}</dd>
  <dt>Log id</dt><dd class="mono">{{ r.integrity.log_id or "unknown (the log is damaged)" }}</dd>
  <dt>Period</dt><dd><time>{{ start }}</time> to <time>{{ end }}</time></dd>
  <dt>Generated</dt><dd><time>{{ when(r.generated) }}</time> by rail {{ r.rail_version }}</dd>
</dl>

<section class="verdict {{ 'ok' if r.integrity.ok else 'bad' }}">
  <strong>Integrity: {{ "INTACT" if r.integrity.ok else "TAMPERED" }}</strong>
  {{ r.integrity.summary }}
  {% if r.integrity.problems or r.integrity.notes or unreadable %}<ul>
  {% if unreadable %}<li><b>{{ unreadable }}</b></li>{% endif %}
  {% for p in r.integrity.problems %}<li>{% if p.seq is not none %}record {{ n(p.seq) }}
  {% if p.request_id %}
    (request {{ p.request_id }}){% endif %}: {% endif %}<b>{{ p.kind }}</b> — {{ p.message }}</li>
  {% endfor %}
  {% for note in r.integrity.notes %}<li>{{ note }}</li>{% endfor %}
  </ul>{% endif %}
</section>
{% for w in r.warnings %}
<section class="warning"><strong>Warning:</strong> {{ w }}</section>
{% endfor %}

<div class="cards">
  <div class="card"><div class="n">{{ n(r.requests.total) }}</div><div class="l">requests</div></div>
  <div class="card"><div class="n allowed">{{ n(r.requests.allowed) }}</div>
  <div class="l">allowed</div></div>
  <div class="card"><div class="n modified">{{ n(r.requests.modified) }}</div>
  <div class="l">modified (redacted)</div></div>
  <div class="card"><div class="n blocked">{{ n(r.requests.blocked) }}</div>
    <div class="l">blocked ({{ pct(r.requests.blocked_share) }})</div></div>
</div>

<h2>Requests over time (per {{ r.timeline.bucket }})</h2>
{% if charts.timeline %}
  <img class="chart" alt="requests per {{ r.timeline.bucket }} by verdict" src="{{ charts.timeline }}">
{% else %}<p class="empty">No requests in this period.</p>{% endif %}

<div class="grid2">
<div>
<h2>Blocks by clause</h2>
{% if charts.blocks_by_clause %}
  <img class="chart" alt="blocked requests by licence clause" src="{{ charts.blocks_by_clause }}">
  {% endif %}
<table><tr><th>clause</th><th class="n">blocked requests</th></tr>
{% for k, v in r.blocks_by_clause.items() %}<tr><td>{{ clause(k) }}</td><td class="n">{{ n(v) }}</td></tr>
{% else %}<tr><td colspan="2" class="empty">no blocks</td></tr>{% endfor %}</table>
</div>
<div>
<h2>Blocks by rule</h2>
{% if charts.blocks_by_rule %}
  <img class="chart" alt="blocked requests by rule" src="{{ charts.blocks_by_rule }}">{% endif %}
<table><tr><th>rule</th><th class="n">blocked requests</th></tr>
{% for k, v in r.blocks_by_rule.items() %}<tr><td>{{ k }}</td><td class="n">{{ n(v) }}</td></tr>
{% else %}<tr><td colspan="2" class="empty">no blocks</td></tr>{% endfor %}</table>
</div>
</div>

{% macro score_table(section, first, threshold) %}
<table>
<tr><th rowspan="2">{{ first }}</th>
  <th colspan="4" class="group">prompts</th><th colspan="4" class="group">outputs</th></tr>
<tr>{% for _ in range(2) %}<th class="n">scored</th><th class="n">mean</th><th class="n">max</th>
  <th class="n">{{ threshold }}</th>{% endfor %}</tr>
{% for name, prompt, output in rows(section) %}
<tr><td>{{ caller(name) }}</td>
{% for s in (prompt, output) %}{% if s %}<td class="n">{{ n(s.count) }}</td>
  <td class="n">{{ "%.3f"|format(s.mean) }}</td><td class="n">{{ "%.3f"|format(s.max) }}</td>
  <td class="n">{{ n(s.flagged) }} ({{ pct(s.flagged_share) }})</td>
{% else %}<td class="n" colspan="4">–</td>{% endif %}{% endfor %}</tr>
{% endfor %}</table>
{% endmacro %}

<h2>Toxicity scores (prompts and outputs)</h2>
{% if charts.toxicity %}
  <img class="chart" alt="toxicity histograms per label, prompts and outputs" src="{{ charts.toxicity }}">
{% call(name) score_table(r.toxicity, "label", "flagged (≥ " ~ r.toxicity.flag_at ~ ")") %}
{{- label(name) }}{% endcall %}
{% else %}<p class="empty">No toxicity scores were recorded in this period.</p>{% endif %}

<h2>Semantic screening scores by clause</h2>
{% if charts.semantic %}
<p class="clause">How close each prompt and output came to the exemplars of each licence clause: one row per
clause, darker cells for more texts at that score. {{ semantic_note }}</p>
  <img class="chart" alt="semantic screening score distribution per clause, prompts and outputs"
       src="{{ charts.semantic }}">
{% call(name) score_table(r.semantic, "clause", "fired") %}clause ({{ name }}){% endcall %}
{% else %}<p class="empty">No semantic screening scores were recorded in this period.</p>{% endif %}

<div class="grid2">
<div>
<h2>Requests by language</h2>
{% if charts.languages %}<img class="chart" alt="requests by language" src="{{ charts.languages }}">
  {% endif %}
<table><tr><th>language</th><th class="n">requests</th></tr>
{% for k, v in r.languages.items() %}<tr><td>{{ k }}</td><td class="n">{{ n(v) }}</td></tr>
  {% endfor %}</table>
</div>
<div>
<h2>Attribution coverage</h2>
<p>{{ n(r.attribution.passed_outputs) }} output(s) reached users.</p>
<table><tr><th>attribution</th><th class="n">outputs</th><th class="n">share</th></tr>
<tr><td>visible disclosure</td><td class="n">{{ n(r.attribution.with_disclosure) }}</td><td class="n">
  {{ pct(r.attribution.disclosure_share) }}</td></tr>
<tr><td>provenance record</td><td class="n">{{ n(r.attribution.with_provenance) }}</td><td class="n">
  {{ pct(r.attribution.provenance_share) }}</td></tr>
<tr><td>watermark</td><td class="n">{{ n(r.attribution.with_watermark) }}</td><td class="n">
  {{ pct(r.attribution.watermark_share) }}</td></tr>
</table>
<h2>Deployment</h2>
<table>
<tr><th>models</th><td>{% for k, v in r.models.items() %}{{ k }} ({{ n(v) }}){% if not loop.last %},
  {% endif %}{% endfor %}</td></tr>
<tr><th>deployments</th><td>{% for k, v in r.deployments.items() %}{{ k }} ({{ n(v) }}){% if not loop.last %},
  {% endif %}{% endfor %}</td></tr>
<tr><th>privacy</th><td>{% for k, v in r.privacy.items() %}{{ k }} ({{ n(v) }}){% if not loop.last %},
  {% endif %}{% endfor %}</td></tr>
<tr><th>latency p50 / p95</th>
  <td class="nowrap">{{ n(r.latency_ms.p50) }} / {{ n(r.latency_ms.p95) }} ms</td></tr>
</table>
</div>
</div>

{% for m in r.compliance %}
<h2>Compliance matrix — policy {{ m.policy_id }}</h2>
<p class="clause">Licence {{ m.licence or "not recorded" }}{% if m.policy_sha256 %} · policy sha256
  <span class="mono">{{ m.policy_sha256[:16] }}…</span>{% endif %}.
Each use restriction, the rules that enforce it, and how often each fired / blocked in this period.</p>
<table><tr><th style="width: 46%">clause</th><th>controls (rule: fired / blocked)</th><th class="n">fired</th>
  <th class="n">blocked requests</th></tr>
{% for row in m.clauses %}
<tr><td><b>({{ row.clause }})</b> {{ clause_text(row.text) }}</td>
  <td>{% if row.controls %}<ul class="controls">{% for c in row.controls %}<li><span>{{ c.rule }}
    {%- if c.coverage %} <span class="coverage">[{{ c.coverage }}]</span>{% endif %}</span>
    <span class="count">{{ n(c.fired) }} / {{ n(c.blocked) }}</span></li>{% endfor %}</ul>
  {% else %}<span class="none">no control</span>{% endif %}</td>
  <td class="n">{{ n(row.fired) }}</td><td class="n">{{ n(row.blocks) }}</td></tr>
{% endfor %}</table>
{% else %}
<h2>Compliance matrix</h2><p class="empty">No policy recorded in this period.</p>
{% endfor %}

{% if r.notes %}<h2>Notes</h2><ul class="notes">{% for note in r.notes %}<li>{{ note }}</li>{% endfor %}</ul>
  {% endif %}
</body>
</html>
"""


def html(report: Mapping[str, Any]) -> str:
    """Return the report as one self-contained HTML page (embedded SVG charts, print stylesheet)."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    template = env.from_string(_TEMPLATE)
    start, end = _period(report)
    report = {"warnings": [], "semantic": {"prompt": {}, "output": {}, "bins": 20, "range": [-1.0, 1.0],
                                           "thresholds": {}}, **report}
    return template.render(r=report, charts=_charts(report), pct=_pct, n=_n, when=_when, clause=_clause,
                           label=_label, clause_text=_clause_text, rows=_score_rows, start=start, end=end,
                           unreadable=_unreadable(report["integrity"]), semantic_note=_SEMANTIC_NOTE)
