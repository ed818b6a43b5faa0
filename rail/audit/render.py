"""Render an audit report dict as Markdown or as one self-contained, printable HTML page.

Charts are drawn with matplotlib's Agg backend and embedded as SVG data URIs, so the page needs no network,
no external CSS or JavaScript, and stays sharp when printed.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

import jinja2

__all__ = ["html", "markdown"]

_VERDICT_COLOURS = {"allowed": "#2e7d32", "modified": "#e0a100", "blocked": "#c62828"}
_STAGE_COLOURS = {"prompt": "#3465a4", "output": "#8f5902"}
#: Width of full-width charts: the page's content width at 96 px per inch, so text is drawn at 1:1.
_WIDE_IN = 10.4


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


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
    return (f"{count} record(s) could not be read and are left out of every figure below "
            f"(records {listed}{more})")


def _excerpt(text: str | None, limit: int = 90) -> str:
    if not text:
        return "(clause text not available)"
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def markdown(report: Mapping[str, Any]) -> str:
    """Return the report as Markdown tables, integrity verdict first."""
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
    period = report["period"]
    start = period["since"] or period["first"] or "–"
    end = period["until"] or period["last"] or "–"
    lines += ["", f"Period: {start} to {end} · generated {report['generated']} by rail "
              f"{report['rail_version']}", ""]
    req = report["requests"]
    lines += ["## Decisions", "", "| verdict | requests |", "|---|---:|"]
    lines += [f"| {v} | {req[v]} |" for v in ("allowed", "modified", "blocked")]
    lines += [f"| **total** | **{req['total']}** |", ""]

    timeline = report["timeline"]
    lines += [f"## Requests per {timeline['bucket']}", "",
              "| period | allowed | modified | blocked | total |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['period']} | {r['allowed']} | {r['modified']} | {r['blocked']} | {r['total']} |"
              for r in timeline["rows"]]

    for title, key, column in (("Blocks by clause", "blocks_by_clause", "clause"),
                               ("Blocks by rule", "blocks_by_rule", "rule")):
        lines += ["", f"## {title}", "", f"| {column} | blocked requests |", "|---|---:|"]
        lines += [f"| {_md_escape(k)} | {v} |" for k, v in report[key].items()] or ["| – | 0 |"]

    tox = report["toxicity"]
    lines += ["", "## Toxicity scores", "", f"Flagged = probability ≥ {tox['flag_at']}.", "",
              "| text | label | scored | mean | max | flagged |", "|---|---|---:|---:|---:|---:|"]
    for stage in ("prompt", "output"):
        for label, s in tox[stage].items():
            lines.append(f"| {stage} | {_md_escape(label)} | {s['count']} | {s['mean']:.3f} | "
                         f"{s['max']:.3f} | {s['flagged']} ({_pct(s['flagged_share'])}) |")

    lines += ["", "## Requests by language", "", "| language | requests |", "|---|---:|"]
    lines += [f"| {_md_escape(k)} | {v} |" for k, v in report["languages"].items()]

    att = report["attribution"]
    lines += ["", "## Attribution coverage", "", f"Outputs passed to users: {att['passed_outputs']}", "",
              "| attribution | outputs | share |", "|---|---:|---:|",
              f"| visible disclosure | {att['with_disclosure']} | {_pct(att['disclosure_share'])} |",
              f"| provenance record | {att['with_provenance']} | {_pct(att['provenance_share'])} |",
              f"| watermark | {att['with_watermark']} | {_pct(att['watermark_share'])} |"]

    for matrix in report["compliance"]:
        licence = matrix["licence"] or "no licence recorded"
        lines += ["", f"## Compliance matrix — policy {_md_escape(matrix['policy_id'])} "
                  f"({_md_escape(licence)})", "",
                  "| clause | restriction | controls (rule: fired / blocked) | fired | blocked requests |",
                  "|---|---|---|---:|---:|"]
        for row in matrix["clauses"]:
            controls = "; ".join(f"{c['rule']}: {c['fired']} / {c['blocked']}" for c in row["controls"])
            lines.append(f"| ({_md_escape(row['clause'])}) | {_md_escape(_excerpt(row['text']))} | "
                         f"{_md_escape(controls) or '**no control**'} | {row['fired']} | {row['blocks']} |")
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {_md_escape(n)}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def _svg(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _charts(report: Mapping[str, Any]) -> dict[str, str | None]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    style = {"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
             "font.family": "sans-serif"}
    # Every chart the page can show has a key, so a period without data renders the "none" text instead.
    charts: dict[str, str | None] = dict.fromkeys(
        ("timeline", "blocks_by_clause", "blocks_by_rule", "languages", "toxicity"))
    with matplotlib.rc_context(style):
        rows = report["timeline"]["rows"]
        if rows:
            fig = Figure(figsize=(_WIDE_IN, 2.8))
            ax = fig.subplots()
            labels = [r["period"] for r in rows]
            bottom = [0] * len(rows)
            for verdict, colour in _VERDICT_COLOURS.items():
                values = [r[verdict] for r in rows]
                ax.bar(range(len(rows)), values, bottom=bottom, color=colour, label=verdict, width=0.8)
                bottom = [b + v for b, v in zip(bottom, values, strict=True)]
            step = max(1, len(rows) // 12)
            ax.set_xticks(range(0, len(rows), step), labels[::step], rotation=30, ha="right")
            ax.set_ylabel("requests")
            ax.legend(frameon=False, ncols=3, loc="upper left", bbox_to_anchor=(0, 1.18))
            charts["timeline"] = _svg(fig)

        for key in ("blocks_by_clause", "blocks_by_rule", "languages"):
            data = report[key]
            if not data:
                continue
            items = list(data.items())[:15][::-1]
            fig = Figure(figsize=(3.6, 0.35 * len(items) + 0.8))
            ax = fig.subplots()
            prefix = "clause " if key == "blocks_by_clause" else ""
            colour = "#c62828" if key.startswith("blocks") else "#3465a4"
            ax.barh([f"{prefix}{k}" for k, _ in items], [v for _, v in items], color=colour)
            ax.set_xlabel("blocked requests" if key.startswith("blocks") else "requests")
            ax.xaxis.get_major_locator().set_params(integer=True)
            charts[key] = _svg(fig)

        tox = report["toxicity"]
        labels = sorted(set(tox["prompt"]) | set(tox["output"]))
        if labels:
            columns = 4
            nrows = -(-len(labels) // columns)
            fig = Figure(figsize=(_WIDE_IN, 1.9 * nrows + 0.5))
            axes = fig.subplots(nrows, columns, squeeze=False, sharex=True)
            edges = [i / tox["bins"] for i in range(tox["bins"])]
            for index, ax in enumerate(axes.flat):
                if index >= len(labels):
                    ax.set_visible(False)
                    continue
                label = labels[index]
                bounds = [*edges, 1.0]
                for stage, colour in _STAGE_COLOURS.items():
                    if label in tox[stage]:
                        # Outlines rather than bars so prompt and output stay readable where they overlap.
                        ax.stairs(tox[stage][label]["histogram"], bounds, color=colour, linewidth=1.4,
                                  fill=stage == "prompt", alpha=0.35 if stage == "prompt" else 1.0,
                                  label=stage)
                ax.set_title(label, fontsize=9)
                ax.set_yscale("symlog", linthresh=1)
                ax.axvline(tox["flag_at"], color="#555", linewidth=0.7, linestyle="--")
                ax.set_xlim(0, 1)
            handles, names = axes.flat[0].get_legend_handles_labels()
            fig.legend(handles, names, frameon=False, ncols=2, loc="upper right", fontsize=8)
            fig.supxlabel("probability", fontsize=9)
            fig.supylabel("texts (log)", fontsize=9)
            charts["toxicity"] = _svg(fig)
    return charts


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Audit report — {{ r.log }}</title>
<style>
  :root { --ok: #1b5e20; --bad: #b71c1c; --muted: #5f6368; --rule: #d7d7d7; }
  * { box-sizing: border-box; }
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
         color: #1f1f1f; max-width: 1080px; margin: 0 auto; padding: 24px 32px 48px; }
  h1 { font-size: 22px; margin: 0 0 4px; }
  h2 { font-size: 16px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--rule); }
  .meta { color: var(--muted); font-size: 12px; margin-bottom: 16px; word-break: break-all; }
  .verdict { border-radius: 6px; padding: 12px 16px; margin: 8px 0 4px; border: 2px solid; }
  .verdict.ok { border-color: var(--ok); background: #e8f5e9; }
  .verdict.bad { border-color: var(--bad); background: #ffebee; }
  .verdict strong { font-size: 18px; display: block; }
  .verdict.ok strong { color: var(--ok); } .verdict.bad strong { color: var(--bad); }
  .verdict ul { margin: 6px 0 0; padding-left: 18px; font-size: 13px; }
  .cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin: 12px 0; }
  .card { border: 1px solid var(--rule); border-radius: 6px; padding: 10px 12px; }
  .card .n { font-size: 22px; font-weight: 600; }
  .card .l { color: var(--muted); font-size: 12px; }
  .allowed { color: #2e7d32; } .modified { color: #9a6b00; } .blocked { color: #c62828; }
  .grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; align-items: start; }
  table { border-collapse: collapse; width: 100%; font-size: 13px; margin: 6px 0; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--rule); vertical-align: top; }
  th { background: #f4f4f4; font-weight: 600; }
  td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
  .none { color: var(--bad); font-weight: 600; }
  .clause { color: var(--muted); font-size: 12px; }
  img.chart { max-width: 100%; height: auto; display: block; margin: 4px 0; }
  .notes li { color: var(--muted); }
  .empty { color: var(--muted); font-style: italic; }
  @media print {
    body { max-width: none; padding: 0; font-size: 11px; }
    h2 { break-after: avoid; }
    table, img.chart, .verdict, .cards { break-inside: avoid; }
    .verdict.ok, .verdict.bad, th { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
    @page { margin: 14mm; }
  }
</style>
</head>
<body>
<h1>Audit report</h1>
<div class="meta">Log {{ r.log }} · log id {{ r.integrity.log_id }} · period
  {{ r.period.since or r.period.first or "–" }} → {{ r.period.until or r.period.last or "–" }} ·
  generated {{ r.generated }} by rail {{ r.rail_version }}</div>

<section class="verdict {{ 'ok' if r.integrity.ok else 'bad' }}">
  <strong>Integrity: {{ "INTACT" if r.integrity.ok else "TAMPERED" }}</strong>
  {{ r.integrity.summary }}
  {% if r.integrity.problems or r.integrity.notes or unreadable %}<ul>
  {% if unreadable %}<li><b>{{ unreadable }}</b></li>{% endif %}
  {% for p in r.integrity.problems %}<li>{% if p.seq is not none %}record {{ p.seq }}
  {% if p.request_id %}
    (request {{ p.request_id }}){% endif %}: {% endif %}<b>{{ p.kind }}</b> — {{ p.message }}</li>
  {% endfor %}
  {% for n in r.integrity.notes %}<li>{{ n }}</li>{% endfor %}
  </ul>{% endif %}
</section>

<div class="cards">
  <div class="card"><div class="n">{{ r.requests.total }}</div><div class="l">requests</div></div>
  <div class="card"><div class="n allowed">{{ r.requests.allowed }}</div>
  <div class="l">allowed</div></div>
  <div class="card"><div class="n modified">{{ r.requests.modified }}</div>
  <div class="l">modified (redacted)</div></div>
  <div class="card"><div class="n blocked">{{ r.requests.blocked }}</div>
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
{% for k, v in r.blocks_by_clause.items() %}<tr><td>({{ k }})</td><td class="n">{{ v }}</td></tr>
{% else %}<tr><td colspan="2" class="empty">no blocks</td></tr>{% endfor %}</table>
</div>
<div>
<h2>Blocks by rule</h2>
{% if charts.blocks_by_rule %}
  <img class="chart" alt="blocked requests by rule" src="{{ charts.blocks_by_rule }}">{% endif %}
<table><tr><th>rule</th><th class="n">blocked requests</th></tr>
{% for k, v in r.blocks_by_rule.items() %}<tr><td>{{ k }}</td><td class="n">{{ v }}</td></tr>
{% else %}<tr><td colspan="2" class="empty">no blocks</td></tr>{% endfor %}</table>
</div>
</div>

<h2>Toxicity scores (prompts and outputs)</h2>
{% if charts.toxicity %}
  <img class="chart" alt="toxicity histograms per label" src="{{ charts.toxicity }}">
<table><tr><th>text</th><th>label</th><th class="n">scored</th><th class="n">mean</th>
  <th class="n">max</th>
  <th class="n">flagged (≥ {{ r.toxicity.flag_at }})</th></tr>
{% for stage in ("prompt", "output") %}{% for label, s in r.toxicity[stage].items() %}
<tr><td>{{ stage }}</td><td>{{ label }}</td><td class="n">{{ s.count }}</td><td class="n">
  {{ "%.3f"|format(s.mean) }}</td>
  <td class="n">{{ "%.3f"|format(s.max) }}</td><td class="n">
  {{ s.flagged }} ({{ pct(s.flagged_share) }})</td></tr>
{% endfor %}{% endfor %}</table>
{% else %}<p class="empty">No toxicity scores were recorded in this period.</p>{% endif %}

<div class="grid2">
<div>
<h2>Requests by language</h2>
{% if charts.languages %}<img class="chart" alt="requests by language" src="{{ charts.languages }}">
  {% endif %}
<table><tr><th>language</th><th class="n">requests</th></tr>
{% for k, v in r.languages.items() %}<tr><td>{{ k }}</td><td class="n">{{ v }}</td></tr>
  {% endfor %}</table>
</div>
<div>
<h2>Attribution coverage</h2>
<p>{{ r.attribution.passed_outputs }} output(s) reached users.</p>
<table><tr><th>attribution</th><th class="n">outputs</th><th class="n">share</th></tr>
<tr><td>visible disclosure</td><td class="n">{{ r.attribution.with_disclosure }}</td><td class="n">
  {{ pct(r.attribution.disclosure_share) }}</td></tr>
<tr><td>provenance record</td><td class="n">{{ r.attribution.with_provenance }}</td><td class="n">
  {{ pct(r.attribution.provenance_share) }}</td></tr>
<tr><td>watermark</td><td class="n">{{ r.attribution.with_watermark }}</td><td class="n">
  {{ pct(r.attribution.watermark_share) }}</td></tr>
</table>
<h2>Deployment</h2>
<table>
<tr><th>models</th><td>{% for k, v in r.models.items() %}{{ k }} ({{ v }}){% if not loop.last %},
  {% endif %}{% endfor %}</td></tr>
<tr><th>deployments</th><td>{% for k, v in r.deployments.items() %}{{ k }} ({{ v }}){% if not loop.last %},
  {% endif %}{% endfor %}</td></tr>
<tr><th>privacy</th><td>{% for k, v in r.privacy.items() %}{{ k }} ({{ v }}){% if not loop.last %},
  {% endif %}{% endfor %}</td></tr>
<tr><th>latency p50 / p95</th><td>{{ r.latency_ms.p50 if r.latency_ms.p50 is not none else "–" }} /
  {{ r.latency_ms.p95 if r.latency_ms.p95 is not none else "–" }} ms</td></tr>
</table>
</div>
</div>

{% for m in r.compliance %}
<h2>Compliance matrix — policy {{ m.policy_id }}</h2>
<p class="clause">Licence {{ m.licence or "not recorded" }}{% if m.policy_sha256 %} · policy sha256
  {{ m.policy_sha256[:16] }}…{% endif %}.
Each use restriction, the rules that enforce it, and how often each fired / blocked in this period.</p>
<table><tr><th>clause</th><th>controls (rule: fired / blocked)</th><th class="n">fired</th>
  <th class="n">blocked requests</th></tr>
{% for row in m.clauses %}
<tr><td><b>({{ row.clause }})</b> <span class="clause">{{ excerpt(row.text) }}</span></td>
  <td>{% for c in row.controls %}{{ c.rule }}
    {%- if c.coverage %} <span class="clause">[{{ c.coverage }}]</span>{% endif %}:
    {{ c.fired }} / {{ c.blocked }}{% if not loop.last %}<br>{% endif %}{% else %}
  <span class="none">no control</span>{% endfor %}</td>
  <td class="n">{{ row.fired }}</td><td class="n">{{ row.blocks }}</td></tr>
{% endfor %}</table>
{% else %}
<h2>Compliance matrix</h2><p class="empty">No policy recorded in this period.</p>
{% endfor %}

{% if r.notes %}<h2>Notes</h2><ul class="notes">{% for n in r.notes %}<li>{{ n }}</li>{% endfor %}</ul>
  {% endif %}
</body>
</html>
"""


def html(report: Mapping[str, Any]) -> str:
    """Return the report as one self-contained HTML page (embedded SVG charts, print stylesheet)."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    template = env.from_string(_TEMPLATE)
    return template.render(r=report, charts=_charts(report), pct=_pct, excerpt=lambda t: _excerpt(t, 140),
                           unreadable=_unreadable(report["integrity"]))
