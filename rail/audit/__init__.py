"""Tamper-evident audit records of every gated request: records, privacy modes, sinks, stores and reports.

Example::

    from rail.audit import AuditLog, load_key, verify_log
    log = AuditLog("audit.db", signing_key="audit.key", checkpoint_every=1000)   # pass as the gate's sink
    verify_log("audit.db", key=load_key("audit.key.pub")).ok                     # True while intact
    shared = AuditLog("postgresql://rail_appender@db.internal/rail")             # one log, many hosts
"""

from rail.audit.chain import Checkpoint, load_checkpoint
from rail.audit.exchange import export_jsonl, import_jsonl
from rail.audit.log import SIGNING_KEY_ENV, AuditLog, read_checkpoints, read_records
from rail.audit.privacy import SALT_ENV, PrivacyMode, apply_privacy, hash_text
from rail.audit.record import AuditRecord, utc_now
from rail.audit.sinks import AuditSink, BufferedSink, JsonlSink, open_sink
from rail.audit.store import AuditStore, open_store
from rail.audit.verify import Problem, VerifyResult, verify_log
from rail.canonical import canonical_json
from rail.signing import CheckpointKey, generate_key, load_key

__all__ = [
    "SALT_ENV",
    "SIGNING_KEY_ENV",
    "AuditLog",
    "AuditRecord",
    "AuditSink",
    "AuditStore",
    "BufferedSink",
    "Checkpoint",
    "CheckpointKey",
    "JsonlSink",
    "PrivacyMode",
    "Problem",
    "VerifyResult",
    "apply_privacy",
    "canonical_json",
    "export_jsonl",
    "generate_key",
    "hash_text",
    "import_jsonl",
    "load_checkpoint",
    "load_key",
    "open_sink",
    "open_store",
    "read_checkpoints",
    "read_records",
    "utc_now",
    "verify_log",
]
