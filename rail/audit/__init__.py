"""Tamper-evident audit records of every gated request: records, privacy modes, sinks, the log and reports.

Example::

    from rail.audit import AuditLog, load_key, verify_log
    log = AuditLog("audit.db", signing_key="audit.key", checkpoint_every=1000)   # pass as the gate's sink
    verify_log("audit.db", key=load_key("audit.key.pub")).ok                     # True while intact
"""

from rail.audit.chain import Checkpoint, load_checkpoint
from rail.audit.exchange import export_jsonl, import_jsonl
from rail.audit.keys import CheckpointKey, generate_key, load_key
from rail.audit.log import SIGNING_KEY_ENV, AuditLog, BufferedSink, read_records
from rail.audit.record import (
    SALT_ENV,
    AuditRecord,
    AuditSink,
    JsonlSink,
    PrivacyMode,
    apply_privacy,
    canonical_json,
    hash_text,
    utc_now,
)
from rail.audit.verify import Problem, VerifyResult, verify_log

__all__ = [
    "SALT_ENV",
    "SIGNING_KEY_ENV",
    "AuditLog",
    "AuditRecord",
    "AuditSink",
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
    "read_records",
    "utc_now",
    "verify_log",
]
