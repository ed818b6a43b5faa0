"""Record factories and key files shared by the audit tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rail.audit import AuditRecord, generate_key

LICENCE = "bigscience-bloom-rail-1.0"


def _violation(rule: str, clause: str, action: str = "block", reason: str = "matched") -> dict:
    return {"rule": rule, "restriction": clause, "licence": LICENCE, "stage": "input", "action": action,
            "severity": "high", "reason": reason, "span": [0, 4]}


def build_record(i: int = 0, **overrides) -> AuditRecord:
    """Return a realistic record; every third one is blocked under clause (l)."""
    blocked = i % 3 == 0
    fields = dict(
        time=f"2025-03-{1 + i % 5:02d}T{i % 24:02d}:00:00.000000Z",
        request_id=f"req-{i}",
        deployment="helpdesk",
        model="bigscience/bloomz-560m",
        provider="transformers",
        params={"max_tokens": 16, "temperature": 0.7, "do_sample": True},
        input_tokens=5,
        output_tokens=0 if blocked else 7,
        finish_reason="stop",
        verdict="blocked" if blocked else "allowed",
        violations=(_violation("no-medical-advice", "l"),) if blocked else (),
        scores={"prompt": {"toxicity": 0.01 * (i % 100), "insult": 0.02},
                "output": {} if blocked else {"toxicity": 0.9 if i % 7 == 0 else 0.05}},
        language="fr" if i % 4 == 0 else "en",
        provenance=None if blocked else {"disclosure": "prefix", "watermark": None, "output_sha256": "x"},
        policy_id=LICENCE,
        policy_sha256="ab" * 32,
        licence=LICENCE,
        durations_ms={"total": 10.0 + i},
        prompt=f"prompt {i}",
        output=None if blocked else f"output {i}",
    )
    fields.update(overrides)
    return AuditRecord(**fields)


@pytest.fixture(scope="session")
def make_record() -> Callable[..., AuditRecord]:
    return build_record


@pytest.fixture(scope="session")
def ed25519_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    private, public = generate_key(tmp_path_factory.mktemp("keys") / "audit.key")
    assert public is not None
    return private, public


@pytest.fixture(scope="session")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    private, public = generate_key(tmp_path_factory.mktemp("other") / "other.key")
    assert public is not None
    return private, public


def unavailable(reason: str) -> None:
    """Skip a test whose facility this machine lacks — but fail in CI, where every facility is provided."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs mounted for one test: writes past its end fail with ENOSPC, as on a full disk."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        unavailable("mounting a small tmpfs (the real full-disk test) needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        unavailable(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill_disk(directory: Path) -> Path:
    """Fill the file system holding ``directory`` to the last byte with one filler file; return its path."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 65536)
            except OSError:
                break
    finally:
        os.close(fd)
    return filler


_STALLED_WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from conftest import build_record
    from rail.audit import AuditLog, CheckpointKey, load_key

    class StallingKey(CheckpointKey):
        # Called inside the appending transaction, after the rows are written and before the commit.
        def sign(self, message):
            print("inside the transaction", flush=True)
            time.sleep(3600)

    key = load_key({key!r})
    stalling = StallingKey(alg=key.alg, key_id=key.key_id, private=key.private, public=key.public)
    log = AuditLog({target!r}, privacy="full", signing_key=stalling, checkpoint_every=20)
    log.append_many([build_record(i) for i in range(1, 11)])
    print("committed 10", flush=True)
    log.append_many([build_record(i) for i in range(11, 26)])
""")


def kill_writer_inside_a_transaction(target: str, key: Path) -> None:
    """Start a writer that commits 10 records; SIGKILL it while its next 15 are written but not committed."""
    script = _STALLED_WRITER.format(tests=str(Path(__file__).parent), target=target, key=str(key))
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "committed 10"
        assert writer.stdout.readline().strip() == "inside the transaction"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL


#: The grants README.md documents for the appending and the auditing role (rail_owner runs them once).
ROLE_GRANTS = """
GRANT USAGE ON SCHEMA {schema} TO rail_appender, rail_auditor;
GRANT SELECT, INSERT ON rail_audit_meta, rail_audit_records, rail_audit_checkpoints TO rail_appender;
GRANT SELECT ON rail_audit_meta, rail_audit_records, rail_audit_checkpoints TO rail_auditor;
"""


def with_schema(url: str, schema: str) -> str:
    """Return ``url`` with its connections' search_path set to ``schema`` (libpq's ``options`` parameter)."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@dataclass(frozen=True)
class PostgresLog:
    """A fresh, empty schema in the throwaway cluster: one log's worth of tables, per test."""

    schema: str
    owner_url: str
    appender_url: str
    auditor_url: str

    def sql(self, *statements: str, params: tuple = ()) -> list[tuple]:
        """Run statements as the owner (the privileged role) in one transaction; return the last rows."""
        import psycopg

        with psycopg.connect(self.owner_url) as conn:
            rows: list[tuple] = []
            for statement in statements:
                cursor = conn.execute(statement, params if "%s" in statement else None)
                rows = cursor.fetchall() if cursor.description else []
        return rows

    def tamper(self, *statements: str, params: tuple = ()) -> None:
        """Change the log as a privileged role would: the append-only triggers off, the edit, back on."""
        tables = ("rail_audit_meta", "rail_audit_records", "rail_audit_checkpoints")
        self.sql(*(f"ALTER TABLE {t} DISABLE TRIGGER USER" for t in tables), *statements,
                 *(f"ALTER TABLE {t} ENABLE TRIGGER USER" for t in tables), params=params)

    def grant_roles(self) -> None:
        self.sql(ROLE_GRANTS.format(schema=self.schema))


_POSTGRES_ENV = ("RAIL_TEST_POSTGRES_URL", "RAIL_TEST_POSTGRES_APPENDER_URL",
                 "RAIL_TEST_POSTGRES_AUDITOR_URL")


@pytest.fixture(scope="session")
def postgres_urls() -> tuple[str, str, str]:
    """(owner, appender, auditor) URLs of the throwaway cluster that `.ci/postgres.sh start` prints."""
    urls = tuple(os.environ.get(name) or "" for name in _POSTGRES_ENV)
    if not all(urls):
        unavailable(f"{', '.join(_POSTGRES_ENV)} are not set: start a throwaway cluster with "
                    '`eval "$(.ci/postgres.sh start)"` to run the PostgreSQL tests')
    return urls[0], urls[1], urls[2]


@pytest.fixture
def postgres_log(postgres_urls: tuple[str, str, str]) -> Iterator[PostgresLog]:
    import psycopg

    owner, appender, auditor = postgres_urls
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO rail_appender, rail_auditor")
    yield PostgresLog(schema, with_schema(owner, schema), with_schema(appender, schema),
                      with_schema(auditor, schema))
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
