"""``rail audit``: create keys, verify, checkpoint, export, import and report on tamper-evident audit logs.

Every LOG is a file path (SQLite) or a ``postgresql://`` URL. Exit codes: 0 intact / done, 1 the log was
tampered with or is damaged (verify; checkpoint refuses to sign it), 2 usage errors (missing file, not a rail
log, bad key, bad date, a store that cannot be written).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rail.errors import AuditError

if TYPE_CHECKING:
    from rail.signing import CheckpointKey

_KEY_HELP = "Ed25519 public key (or private key) that signed the checkpoints."
_LOG_METAVAR = "LOG"


def _verify_key(public_key: Path | None, hmac_key: Path | None) -> CheckpointKey | None:
    from rail.signing import HMAC_SHA256, load_key

    if public_key and hmac_key:
        raise AuditError("give either --public-key or --hmac-key, not both")
    if hmac_key:
        key = load_key(hmac_key)
        if key.alg != HMAC_SHA256:
            raise AuditError(f"{hmac_key} is not an HMAC key; use --public-key for Ed25519 keys")
        return key
    if public_key:
        key = load_key(public_key)
        if key.alg == HMAC_SHA256:
            raise AuditError(f"{public_key} is an HMAC key; pass it with --hmac-key")
        return key
    return None


@click.group("audit")
def audit() -> None:
    """Verify, export and report on rail's tamper-evident audit logs.

    Every LOG is a SQLite file path or a postgresql:// URL (for example
    postgresql://rail_auditor@db.internal/rail).
    """


@audit.command("keygen")
@click.argument("key_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--type", "alg", type=click.Choice(["ed25519", "hmac-sha256"]), default="ed25519",
              show_default=True, help="Ed25519 key pair (verifiers need only the .pub) or an HMAC secret.")
def keygen(key_file: Path, alg: str) -> None:
    """Create a checkpoint signing key (mode 0600); Ed25519 also writes KEY_FILE.pub for verifiers."""
    from rail.signing import generate_key

    private, public = generate_key(key_file, alg)
    click.echo(f"wrote private key {private} (keep it with the service that writes the log)")
    if public:
        click.echo(f"wrote public key  {public} (give it to auditors: `rail audit verify --public-key`)")


@audit.command("verify")
@click.argument("log", metavar=_LOG_METAVAR)
@click.option("--checkpoint", "checkpoint_files", multiple=True, type=click.Path(path_type=Path),
              help="Checkpoint file kept outside the log (repeatable); detects truncation of the tail.")
@click.option("--public-key", type=click.Path(path_type=Path), help=_KEY_HELP)
@click.option("--hmac-key", type=click.Path(path_type=Path), help="HMAC key that signed the checkpoints.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify(log: str, checkpoint_files: tuple[Path, ...], public_key: Path | None, hmac_key: Path | None,
           as_json: bool) -> None:
    """Check the hash chain and checkpoints of LOG; exit 0 intact, 1 tampered, 2 usage error."""
    from rail.audit.chain import load_checkpoint
    from rail.audit.verify import verify_log

    key = _verify_key(public_key, hmac_key)
    checkpoints = [load_checkpoint(path) for path in checkpoint_files]
    result = verify_log(log, checkpoints=checkpoints, key=key)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(f"{result.path}: {result.summary()}")
        for problem in result.problems[1:]:
            click.echo(f"  also: {problem}")
        for note in result.notes:
            click.echo(f"  note: {note}")
    sys.exit(0 if result.ok else 1)


@audit.command("checkpoint")
@click.argument("log", metavar=_LOG_METAVAR)
@click.option("--signing-key", type=click.Path(path_type=Path),
              help="Private key (or HMAC key) to sign a new checkpoint of the current head.")
@click.option("--latest", is_flag=True, help="Export the newest checkpoint stored in the log instead.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Checkpoint file to write; keep it somewhere the log's writers cannot change.")
def checkpoint(log: str, signing_key: Path | None, latest: bool, output: Path) -> None:
    """Sign the log's current size and head (or export the latest stored checkpoint) to a file.

    The chain is verified before signing: a tampered log is refused (exit 1, naming the first bad record),
    since a signature over it would vouch for the tampering. ``--latest`` only reads the log.
    """
    from rail.audit.log import AuditLog, read_checkpoints
    from rail.audit.store import describe_target
    from rail.audit.verify import verify_log

    if latest == bool(signing_key):
        raise AuditError("give exactly one of --signing-key (sign a new checkpoint) or --latest")
    if latest:
        stored = read_checkpoints(log)
        if not stored:
            raise AuditError(f"{describe_target(log)} holds no checkpoint yet; sign one with --signing-key")
        made = stored[-1]
    else:
        result = verify_log(log)
        if not result.ok:
            click.echo(f"{result.path}: {result.summary()}\nrefusing to sign a checkpoint of a tampered log",
                       err=True)
            sys.exit(1)
        # privacy="full" because nothing is appended here: no salt is needed or checked.
        with AuditLog(log, privacy="full", signing_key=signing_key) as opened:
            made = opened.checkpoint()
    made.save(output)
    click.echo(f"checkpoint of {made.size} records (head {made.head[:16]}…) written to {output}")


@audit.command("export")
@click.argument("log", metavar=_LOG_METAVAR)
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
def export(log: str, output: Path) -> None:
    """Write LOG (records and checkpoints) as JSON lines to OUTPUT."""
    from rail.audit.exchange import export_jsonl

    count = export_jsonl(log, output)
    click.echo(f"exported {count:,} records to {output}")


@audit.command("import")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("log", metavar=_LOG_METAVAR)
@click.option("--force", is_flag=True, help="Import even if the chain is broken (verify will report it).")
def import_(source: Path, log: str, force: bool) -> None:
    """Build a new log LOG from a JSON-lines export, refusing a broken chain unless --force."""
    from rail.audit.exchange import import_jsonl
    from rail.audit.store import describe_target

    count = import_jsonl(source, log, force=force)
    click.echo(f"imported {count:,} records into {describe_target(log)}")


@audit.command("report")
@click.argument("log", metavar=_LOG_METAVAR)
@click.option("--format", "fmt", type=click.Choice(["html", "md", "json"]), default="html", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (atomically); default standard output.")
@click.option("--since", help="First day or moment to include (ISO 8601, e.g. 2025-01-01).")
@click.option("--until", help="Last day or moment to include (ISO 8601; a bare date includes that day).")
@click.option("--policy", help="Policy file or pack for the compliance matrix (default: the one recorded).")
@click.option("--checkpoint", "checkpoint_files", multiple=True, type=click.Path(path_type=Path),
              help="Checkpoint file for the integrity verdict (repeatable).")
@click.option("--public-key", type=click.Path(path_type=Path), help=_KEY_HELP)
@click.option("--hmac-key", type=click.Path(path_type=Path), help="HMAC key that signed the checkpoints.")
def report(log: str, fmt: str, output: Path | None, since: str | None, until: str | None, policy: str | None,
           checkpoint_files: tuple[Path, ...], public_key: Path | None, hmac_key: Path | None) -> None:
    """Summarise LOG for people: integrity verdict, decisions, blocks, scores, attribution, compliance."""
    from rail.audit.chain import load_checkpoint, write_atomic
    from rail.audit.report import build_report, parse_when, render

    start = parse_when(since) if since else None
    end = parse_when(until, end=True) if until else None
    if start and end and start > end:
        raise AuditError(f"--since {since} is after --until {until}")
    key = _verify_key(public_key, hmac_key)
    checkpoints = [load_checkpoint(path) for path in checkpoint_files]
    data = build_report(log, since=start, until=end, policy=policy, checkpoints=checkpoints, key=key)
    text = render(data, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        write_atomic(output, text.encode("utf-8"))
        click.echo(f"{data['integrity']['summary']}\nwrote {fmt} report to {output}", err=True)


COMMANDS: list[click.Command] = [audit]
