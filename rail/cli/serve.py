"""``rail serve``: an OpenAI-compatible HTTP server in which every request goes through the gate.

Exit codes: 0 after a clean shutdown (SIGTERM or Ctrl-C drain: no new requests, in-flight ones finish,
the audit log is committed and closed); 2 for usage or configuration errors, including a deployment
declaration the licence forbids (the message names the key and the clause) and an engine that cannot be
reached at start-up.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click

from rail.errors import ConfigError
from rail.generation import DEFAULT_MODEL
from rail.policy import DEFAULT_POLICY

_DEFAULT_LOG = "rail-audit.db"


def _store(target: str, privacy: str) -> Any:
    """The audit log at ``target`` (SQLite path or postgresql:// URL); ``.jsonl`` paths get fsync'd lines."""
    from rail.audit import JsonlSink, open_sink
    from rail.audit.store import is_url

    if not is_url(target) and target.endswith(".jsonl"):
        return JsonlSink(target, privacy=privacy, fsync=True)
    return open_sink(target, privacy=privacy)


@click.command("serve")
@click.option(
    "--model",
    "-m",
    default=DEFAULT_MODEL,
    show_default=True,
    help="Hub id or local model directory (local backend).",
)
@click.option(
    "--declaration",
    "-d",
    type=click.Path(dir_okay=False),
    help="Deployment declaration YAML for --api-key keys (and keys that name none).",
)
@click.option(
    "--policy",
    "-p",
    default=DEFAULT_POLICY,
    show_default=True,
    help="Policy file or packaged pack name (default for every key).",
)
@click.option(
    "--audit-log",
    default=_DEFAULT_LOG,
    show_default=True,
    help="Tamper-evident audit log: a SQLite path (created if missing) or a postgresql:// URL; a .jsonl path "
    "gets plain JSON lines.",
)
@click.option(
    "--audit-privacy",
    type=click.Choice(["full", "redacted", "hashed"]),
    default="redacted",
    show_default=True,
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    envvar="RAIL_API_KEY",
    help="Accept this Bearer key (repeatable; RAIL_API_KEY keeps keys out of the process list).",
)
@click.option(
    "--config",
    "keys_file",
    type=click.Path(dir_okay=False),
    help="Keys file (YAML): hashed keys, each with its own declaration, policy and limits.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--backend",
    type=click.Choice(["local", "openai"]),
    default="local",
    show_default=True,
    help="local: transformers in this process; openai: a remote OpenAI-compatible engine.",
)
@click.option(
    "--upstream", help="URL of the OpenAI-compatible engine (vLLM, llama.cpp, TGI) for --backend openai."
)
@click.option("--upstream-model", help="Model id at the engine (default: the first it lists).")
@click.option("--upstream-api-key", envvar="RAIL_UPSTREAM_API_KEY", help="Bearer key the engine expects.")
@click.option(
    "--upstream-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for the engine before answering 504.",
)
@click.option(
    "--upstream-context", type=click.IntRange(1), help="The engine's context in tokens, when it does not say."
)
@click.option(
    "--served-model-name", help="Model name clients use (default: the model's directory name or id)."
)
@click.option("--revision", help="Pin a hub revision (local backend).")
@click.option("--dtype", default="auto", show_default=True)
@click.option("--device", help="cpu, cuda, cuda:1 … (local backend).")
@click.option(
    "--prompt-hygiene",
    type=click.Choice(["auto", "off", "warn", "terminate"]),
    default="auto",
    show_default=True,
)
@click.option("--scorer-settings", type=click.Path(dir_okay=False), help="Detoxify settings YAML.")
@click.option(
    "--sign-key", type=click.Path(dir_okay=False), help="Sign provenance (Ed25519 PEM or HMAC key)."
)
@click.option("--without", multiple=True, help="Check kind not to run (listed as skipped), e.g. toxicity.")
@click.option(
    "--chat-template", type=click.Path(dir_okay=False), help="Jinja2 chat template (default: BLOOMZ turns)."
)
@click.option("--rpm", type=click.IntRange(1), help="Requests per minute for each --api-key key.")
@click.option("--tpm", type=click.IntRange(1), help="Tokens per minute for each --api-key key.")
@click.option("--max-body-bytes", type=click.IntRange(1), default=1024 * 1024, show_default=True)
@click.option("--max-prompt-chars", type=click.IntRange(1), default=32_000, show_default=True)
@click.option(
    "--max-prompts",
    type=click.IntRange(1),
    default=16,
    show_default=True,
    help="Prompts per /v1/completions request and inputs per /v1/moderations request.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(1),
    default=512,
    show_default=True,
    help="Cap on a request's max_tokens (the model's context caps it too).",
)
@click.option(
    "--max-concurrent",
    type=click.IntRange(1),
    default=32,
    show_default=True,
    help="Requests worked on at once.",
)
@click.option(
    "--max-queue",
    type=click.IntRange(0),
    default=64,
    show_default=True,
    help="Requests waiting for a slot; beyond this, 503.",
)
@click.option("--request-timeout", type=float, default=120.0, show_default=True, help="Seconds before a 504.")
@click.option(
    "--batch-window-ms",
    type=float,
    default=10.0,
    show_default=True,
    help="Local backend: how long a request waits for others to share its generate call.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1),
    default=32,
    show_default=True,
    help="Local backend: prompts per generate call (1 turns batching off).",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
def serve_command(**kw: Any) -> None:
    """Serve BLOOM over OpenAI's HTTP API with the licence gate on every route."""
    import uvicorn

    from rail.audit.store import is_url
    from rail.scoring import ScorerSettings, ToxicityScorer
    from rail.server.app import DrainingServer, create_app
    from rail.server.auth import KeyLimits, keys_from_cli, load_keys_file
    from rail.server.chat import ChatTemplate
    from rail.server.limits import ServerLimits
    from rail.server.service import build_service, check_deployments, resolve_tenants

    limits = ServerLimits(
        max_body_bytes=kw["max_body_bytes"],
        max_prompt_chars=kw["max_prompt_chars"],
        max_prompts=kw["max_prompts"],
        max_tokens=kw["max_tokens"],
        default_max_tokens=min(16, kw["max_tokens"]),
        max_concurrent=kw["max_concurrent"],
        max_queue=kw["max_queue"],
        request_timeout_s=kw["request_timeout"],
    )
    if kw["batch_window_ms"] < 0:
        raise click.BadParameter("must be 0 or more", param_hint="--batch-window-ms")
    specs = keys_from_cli(kw["api_keys"], KeyLimits(kw["rpm"], kw["tpm"]))
    if kw["keys_file"]:
        specs += load_keys_file(kw["keys_file"])
    if not specs:
        raise click.UsageError(
            "rail serve needs at least one key: --api-key KEY (or RAIL_API_KEY), or --config "
            "FILE with hashed keys; every route except /health requires one"
        )
    if len({s.digest for s in specs}) != len(specs):
        raise ConfigError(
            "the same API key is given twice",
            path="--api-key",
            hint="give each key once; a key belongs to one tenant",
        )
    if kw["backend"] == "openai" and not kw["upstream"]:
        raise click.UsageError("--backend openai needs --upstream URL (e.g. http://127.0.0.1:8080)")
    if kw["backend"] == "local" and kw["upstream"]:
        raise click.UsageError("--upstream is for --backend openai")
    chat = ChatTemplate.from_file(kw["chat_template"]) if kw["chat_template"] else ChatTemplate()
    tenants = resolve_tenants(specs, declaration=kw["declaration"], policy=kw["policy"])
    scorer = ToxicityScorer(ScorerSettings.from_env(kw["scorer_settings"]))

    store = _store(kw["audit_log"], kw["audit_privacy"])
    model_ref = kw["upstream"] if kw["backend"] == "openai" else kw["model"]
    try:
        check_deployments(tenants, model_ref=model_ref, sink=store)
        model = _load(kw)
    except BaseException:
        _close(store)
        raise
    name = kw["served_model_name"] or (
        Path(kw["model"]).name if kw["backend"] == "local" else model.info.model_id
    )
    service = build_service(
        model=model,
        tenants=tenants,
        store=store,
        limits=limits,
        chat=chat,
        model_name=name,
        audit_path=None if is_url(kw["audit_log"]) else Path(kw["audit_log"]),
        scorer=scorer,
        signing_key=kw["sign_key"],
        without=kw["without"],
        batch_window_s=kw["batch_window_ms"] / 1000,
        max_batch=kw["max_batch"],
    )
    for problem in service.warm_up():
        click.echo(f"rail: warning: {problem}; requests that need toxicity scores will be blocked", err=True)
    app = create_app(service)
    config = uvicorn.Config(
        app,
        host=kw["host"],
        port=kw["port"],
        log_level=kw["log_level"],
        timeout_graceful_shutdown=int(limits.request_timeout_s) + 5,
        access_log=kw["log_level"] in ("info", "debug"),
    )
    server = DrainingServer(config, service)
    logging.getLogger("rail.server").setLevel(kw["log_level"].upper())
    click.echo(
        f"rail serve: {name} ({model.info.provider}) for {len(specs)} key(s) on "
        f"http://{kw['host']}:{kw['port']}; audit log {kw['audit_log']}",
        err=True,
    )
    # uvicorn re-raises the signal it drained on once it is done; a no-op handler makes that a clean exit 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run()
    if not server.started:
        sys.exit(2)


def _load(kw: dict[str, Any]) -> Any:
    if kw["backend"] == "openai":
        from rail.generation import connect

        return connect(
            kw["upstream"],
            model=kw["upstream_model"],
            api_key=kw["upstream_api_key"],
            timeout_s=kw["upstream_timeout"],
            hygiene=kw["prompt_hygiene"],
            context_length=kw["upstream_context"],
        )
    from rail.generation import load_model

    return load_model(
        kw["model"],
        revision=kw["revision"],
        dtype=kw["dtype"],
        device=kw["device"],
        hygiene=kw["prompt_hygiene"],
    )


def _close(store: Any) -> None:
    close = getattr(store, "close", None)
    if close is not None:
        close()


COMMANDS: list[click.Command] = [serve_command]
