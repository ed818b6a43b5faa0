"""Fixtures for the server tests: ``rail serve`` started as a real process on a free port, and helpers.

The main server (session-scoped) serves the tiny BLOOM with the tiny detoxify model and a keys file with
four tenants; the remote server (module-scoped, in test_remote.py) sits in front of the stand-in upstream.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from standin import free_port

REPO = Path(__file__).resolve().parents[2]
MAIN_KEY = "rail-test-main-key-0000000000"
OTHER_KEY = "rail-test-other-key-000000000"
RPM_KEY = "rail-test-rpm-key-00000000000"
TPM_KEY = "rail-test-tpm-key-00000000000"
CLI_KEY = "rail-test-cli-key-00000000000"


# The main tenant: drafts a person reviews, the disclosure after the text.
WRITING = """\
name: drafting-service
purpose: Drafts short texts that an editor reviews before they are published.
domains: [general]
audience: [adults]
automated_decisions: {enabled: false, legal_effect: false, human_review: true}
disclosure: {mode: visible, position: suffix}
languages: [en, fr]
"""


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ServerProcess:
    """``python -m rail.cli serve ARGS --port P``, its output in a log file; started and stopped by tests."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "rail.cli", "serve", *args, "--port", str(self.port)]
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> ServerProcess:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rail serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"rail serve did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; return the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def server_env(tiny_detoxify: tuple[Path, Path]) -> dict[str, str]:
    checkpoint, config_dir = tiny_detoxify
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAIL_DETOXIFY_", "RAIL_API_KEY"))}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        RAIL_DETOXIFY_CHECKPOINT=str(checkpoint),
        RAIL_DETOXIFY_CONFIG=str(config_dir),
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Declarations and the keys file of the main server."""
    root = tmp_path_factory.mktemp("server")
    (root / "writing.yaml").write_text(WRITING, encoding="utf-8")
    (root / "translation.yaml").write_text(
        (REPO / "examples/deployment-translation.yaml").read_text("utf-8"), encoding="utf-8"
    )
    (root / "keys.yaml").write_text(
        f"""\
keys:
  - id: main
    sha256: {sha(MAIN_KEY)}
    declaration: writing.yaml
  - id: other
    sha256: {sha(OTHER_KEY)}
    declaration: translation.yaml
  - id: two-per-minute
    sha256: {sha(RPM_KEY)}
    declaration: writing.yaml
    limits: {{requests_per_minute: 2}}
  - id: few-tokens
    sha256: {sha(TPM_KEY)}
    declaration: writing.yaml
    limits: {{tokens_per_minute: 60}}
""",
        encoding="utf-8",
    )
    return root


@pytest.fixture(scope="session")
def server(
    server_dir: Path, tiny_bloom_dir: Path, tiny_detoxify: tuple[Path, Path]
) -> Iterator[ServerProcess]:
    """The main server: tiny BLOOM, four tenants from the keys file plus one --api-key key."""
    model = server_dir / "tiny-bloom"  # the served name (and the one the disclosure gives) is the directory's
    if not model.exists():
        model.symlink_to(tiny_bloom_dir, target_is_directory=True)
    args = [
        "--model",
        str(model),
        "--declaration",
        str(server_dir / "writing.yaml"),
        "--config",
        str(server_dir / "keys.yaml"),
        "--api-key",
        CLI_KEY,
        "--audit-log",
        str(server_dir / "audit.db"),
        "--max-body-bytes",
        "65536",
        "--max-prompt-chars",
        "4000",
        "--max-tokens",
        "512",
        "--request-timeout",
        "60",
        "--log-level",
        "warning",
    ]
    process = ServerProcess(args, server_env(tiny_detoxify), server_dir / "server.log").start()
    yield process
    process.kill()


@pytest.fixture
def main_key() -> str:
    return MAIN_KEY


class FlakyStore:
    """An audit store in memory that can be told to fail, as a full disk or a lost database would."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.fail = False

    def emit(self, record: Any) -> None:
        self.append_many([record])

    def append_many(self, records: list[Any]) -> list[int]:
        from rail.errors import AuditError

        if self.fail:
            raise AuditError("disk full")
        first = len(self.records) + 1
        self.records.extend(records)
        return list(range(first, len(self.records) + 1))


@contextmanager
def in_process(model: Any, tiny_detoxify: tuple[Path, Path], store: Any, **limits: Any) -> Iterator[str]:
    """Serve ``model`` for MAIN_KEY with the WRITING declaration from a uvicorn thread; yield its URL."""
    import uvicorn

    from rail.policy import load_declaration_text, load_policy
    from rail.scoring import ScorerSettings, ToxicityScorer
    from rail.server import ChatTemplate, KeyLimits, ServerLimits, build_service, create_app, keys_from_cli

    checkpoint, config_dir = tiny_detoxify
    models = ("original", "unbiased", "multilingual")
    settings = ScorerSettings(
        checkpoints=dict.fromkeys(models, str(checkpoint)), configs=dict.fromkeys(models, str(config_dir))
    )
    [spec] = keys_from_cli([MAIN_KEY], KeyLimits())
    service = build_service(
        model=model,
        tenants=[(spec, load_declaration_text(WRITING), load_policy())],
        store=store,
        limits=ServerLimits(**limits),
        chat=ChatTemplate(),
        model_name="served",
        audit_path=None,
        scorer=ToxicityScorer(settings),
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
