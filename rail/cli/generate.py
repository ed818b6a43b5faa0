"""``rail generate`` (gated generation) and ``rail detect`` (watermark test).

Exit codes — generate: 0 every request allowed (or modified), 1 any request blocked, 2 usage or configuration
error (bad flag, missing declaration, refused deployment, model or scorer settings that cannot load).
detect: 0 watermark detected (z >= threshold), 1 not detected, 2 usage or configuration error — like grep,
so ``if rail detect …; then`` reads naturally.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import click

from rail.cli.check import cited
from rail.cli.jsonl import read_objects, read_text_input
from rail.errors import ConfigError
from rail.generation import DEFAULT_MODEL
from rail.policy import DEFAULT_POLICY


def _read_jsonl(path: str) -> list[tuple[Any, str]]:
    items: list[tuple[Any, str]] = []
    for number, obj in read_objects(path, example='{"id": 1, "prompt": "Why is the sky blue?"}'):
        prompt = obj.get("prompt", obj.get("text"))
        if not isinstance(prompt, str):
            raise ConfigError('each line needs a string "prompt" (or "text")', source=path, line=number)
        items.append((obj.get("id", number), prompt))
    return items


def _watermark_options(func: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--watermark-bias",
                type=float,
                default=2.0,
                show_default=True,
                help="Logit bias added to green-list tokens.",
            ),
            click.option(
                "--watermark-ratio",
                type=float,
                default=0.25,
                show_default=True,
                help="Fraction of the vocabulary on the green list.",
            ),
            click.option(
                "--watermark-key",
                type=int,
                default=15485863,
                show_default=True,
                help="Hashing key; detection must use the same one.",
            ),
            click.option(
                "--watermark-scheme",
                type=click.Choice(["lefthash", "selfhash"]),
                default="lefthash",
                show_default=True,
            ),
            click.option(
                "--watermark-context",
                type=int,
                default=1,
                show_default=True,
                help="Context width of the seeding hash.",
            ),
        ]
    ):
        func = option(func)
    return func


def _watermark_settings(kw: dict[str, Any]) -> Any:
    from rail.attribution import WatermarkSettings

    return WatermarkSettings(
        greenlist_ratio=kw.pop("watermark_ratio"),
        bias=kw.pop("watermark_bias"),
        hashing_key=kw.pop("watermark_key"),
        seeding_scheme=kw.pop("watermark_scheme"),
        context_width=kw.pop("watermark_context"),
    )


@click.command("generate")
@click.argument("prompts", nargs=-1)
@click.option(
    "--declaration",
    "-d",
    required=True,
    type=click.Path(dir_okay=False),
    help="Deployment declaration YAML (required: a deployment must declare its use).",
)
@click.option(
    "--policy",
    "-p",
    default=DEFAULT_POLICY,
    show_default=True,
    help="Policy file or packaged pack name.",
)
@click.option(
    "--model",
    "-m",
    default=DEFAULT_MODEL,
    show_default=True,
    help="Hub id or local model directory.",
)
@click.option("--revision", help="Pin a hub revision (branch, tag or commit).")
@click.option("--dtype", default="auto", show_default=True, help="auto, float32, float16 or bfloat16.")
@click.option("--device", help="cpu, cuda, cuda:1 … (default: all GPUs via accelerate, else CPU).")
@click.option("--8bit", "load_in_8bit", is_flag=True, help="Load in 8-bit (needs bitsandbytes and a GPU).")
@click.option(
    "--prompt-hygiene",
    type=click.Choice(["auto", "off", "warn", "terminate"]),
    default="auto",
    show_default=True,
    help="Unclear prompt ends: auto = terminate for bloomz models, off otherwise.",
)
@click.option("--max-new-tokens", type=int, default=64, show_default=True)
@click.option("--sample/--greedy", "do_sample", default=False, show_default=True)
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--top-p", type=float, default=1.0, show_default=True)
@click.option("--top-k", type=int, default=50, show_default=True)
@click.option("--repetition-penalty", type=float, default=1.0, show_default=True)
@click.option("--seed", type=int)
@click.option("--stop", multiple=True, help="Stop sequence (repeatable); the text is cut before it.")
@click.option("--watermark", is_flag=True, help="Add a statistical watermark (detect with `rail detect`).")
@_watermark_options
@click.option(
    "--sign-key", type=click.Path(dir_okay=False), help="Sign provenance (Ed25519 PEM or HMAC key)."
)
@click.option("--scorer-settings", type=click.Path(dir_okay=False), help="Detoxify settings YAML.")
@click.option(
    "--audit-log",
    type=click.Path(dir_okay=False),
    help="Record every request in this tamper-evident audit log: a SQLite file (created if missing) or a "
    "postgresql:// URL. A path ending in .jsonl gets plain JSON lines instead (no hash chain).",
)
@click.option(
    "--audit-privacy",
    type=click.Choice(["full", "redacted", "hashed"]),
    default="redacted",
    show_default=True,
)
@click.option(
    "--jsonl",
    "jsonl",
    type=click.Path(allow_dash=True, dir_okay=False),
    help='Read prompts from JSON lines ({"id": …, "prompt": …}); "-" for stdin.',
)
@click.option("--stream", is_flag=True, help="Print text as it passes the output checks (one prompt).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per prompt.")
def generate_command(prompts: tuple[str, ...], **kw: Any) -> None:
    """Generate with BLOOM/BLOOMZ through the licence gate: checks, scores, attribution, audit."""
    from rail.gate import GatedGenerator, GateResult
    from rail.generation import GenerationParams
    from rail.scoring import ScorerSettings

    watermark = _watermark_settings(kw)
    items: list[tuple[Any, str]] = [(i, p) for i, p in enumerate(prompts, start=1)]
    if kw["jsonl"]:
        items += _read_jsonl(kw["jsonl"])
    elif not items and not sys.stdin.isatty():
        text = read_text_input(sys.stdin.buffer)
        if text.strip():
            items.append((1, text.rstrip("\n")))
    if not items:
        raise click.UsageError("give a prompt, --jsonl FILE, or text on stdin")
    if kw["stream"] and len(items) != 1:
        raise click.UsageError("--stream takes exactly one prompt")

    params = GenerationParams(
        max_new_tokens=kw["max_new_tokens"],
        do_sample=kw["do_sample"],
        temperature=kw["temperature"],
        top_p=kw["top_p"],
        top_k=kw["top_k"],
        seed=kw["seed"],
        stop=tuple(kw["stop"]),
        repetition_penalty=kw["repetition_penalty"],
    )
    from rail.audit import open_sink

    sink = open_sink(kw["audit_log"], privacy=kw["audit_privacy"]) if kw["audit_log"] else None
    gate = GatedGenerator(
        model=kw["model"],
        declaration=kw["declaration"],
        policy=kw["policy"],
        scorer=ScorerSettings.from_env(kw["scorer_settings"]),
        sink=sink,
        params=params,
        watermark=watermark if kw["watermark"] else None,
        signing_key=kw["sign_key"],
        model_options={
            "revision": kw["revision"],
            "dtype": kw["dtype"],
            "device": kw["device"],
            "load_in_8bit": kw["load_in_8bit"],
            "hygiene": kw["prompt_hygiene"],
        },
    )

    results: list[GateResult | None]
    if kw["stream"]:
        stream = gate.generate_stream(items[0][1])
        for chunk in stream:
            if not kw["as_json"]:
                click.echo(chunk, nl=False)
        results = [stream.result]
        if not kw["as_json"] and results[0] is not None and results[0].allowed:
            click.echo()
    else:
        results = list(gate.generate_batch([p for _, p in items]))

    blocked = False
    for (item_id, _), result in zip(items, results, strict=True):
        assert result is not None
        blocked |= not result.allowed
        if kw["as_json"]:
            click.echo(json.dumps({"id": item_id, **result.to_dict()}, ensure_ascii=False))
            continue
        for warning in result.warnings:
            click.echo(f"rail: warning: {warning}", err=True)
        if result.hygiene is not None and result.hygiene.action == "warned":
            click.echo(
                "rail: warning: the prompt has no clear end; BLOOMZ may continue it instead of answering "
                "(end it with a full stop or a cue such as 'Answer:')",
                err=True,
            )
        if not result.allowed:
            clauses = sorted({c for v in result.violations if v.action.value == "block" for c in v.clauses})
            where = f" ({cited(clauses)})" if clauses else ""
            click.echo(f"rail: blocked{where}: {result.reason}", err=True)
        elif not kw["stream"]:
            click.echo(result.final_text)
            if len(items) > 1:
                click.echo()
    sys.exit(1 if blocked else 0)


@click.command("detect")
@click.argument("text")
@click.option(
    "--model",
    "-m",
    default=DEFAULT_MODEL,
    show_default=True,
    help="The model (hub id or directory) whose tokenizer generated the text.",
)
@click.option("--revision", help="Hub revision of that model.")
@click.option(
    "--threshold",
    type=float,
    default=4.0,
    show_default=True,
    help="z-score at or above which the text counts as watermarked.",
)
@_watermark_options
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def detect_command(text: str, **kw: Any) -> None:
    """Test TEXT (or - for stdin) for rail's watermark: z-score, p-value, verdict (exit 0 = watermarked)."""
    from rail.attribution import detect_watermark
    from rail.generation import load_tokenizer

    settings = _watermark_settings(kw)
    if not math.isfinite(kw["threshold"]):
        raise click.BadParameter("must be a finite number", param_hint="--threshold")
    if text == "-":
        text = read_text_input(sys.stdin.buffer)
    tokenizer, config = load_tokenizer(kw["model"], revision=kw["revision"])
    verdict = detect_watermark(text, tokenizer, config, settings, threshold=kw["threshold"])
    if kw["as_json"]:
        click.echo(json.dumps(verdict.to_dict()))
    else:
        label = "watermarked" if verdict.detected else "not watermarked"
        click.echo(
            f"{label}: z={verdict.z_score:.2f} p={verdict.p_value:.3g} "
            f"(threshold z>={verdict.threshold:g}, {verdict.tokens_scored} tokens scored)"
        )
    sys.exit(0 if verdict.detected else 1)


COMMANDS: list[click.Command] = [generate_command, detect_command]
