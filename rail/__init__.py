"""rail: deploy BLOOM and BLOOMZ within the BigScience BLOOM RAIL License v1.0.

The public API in one place::

    from rail import GatedGenerator, AuditLog

    gate = GatedGenerator(model="bigscience/bloomz-560m", declaration="deployment.yaml",
                          sink=AuditLog("audit.db"))
    result = gate.generate("Translate to English: Je t'aime.")
"""

from rail._version import __version__
from rail.attribution import Disclosure, Provenance, WatermarkSettings, detect_watermark
from rail.audit import AuditLog, AuditRecord, JsonlSink, PrivacyMode, verify_log
from rail.cards import import_card_file, lint_card, load_card, render_card
from rail.errors import (
    AuditError,
    AuditWriteError,
    ConfigError,
    DeploymentRefused,
    ModelLoadError,
    RailError,
    ScorerError,
)
from rail.gate import GatedGenerator, GateResult
from rail.generation import GenerationParams, ModelInfo, load_model
from rail.licences import Licence, get_licence
from rail.policy import (
    Action,
    Decision,
    Declaration,
    Policy,
    PolicyEngine,
    Stage,
    Verdict,
    Violation,
    load_declaration,
    load_policy,
)
from rail.scoring import ScorerSettings, ToxicityScorer
from rail.screening import Screened, Screening
from rail.text import normalize

__all__ = [
    "Action",
    "AuditError",
    "AuditLog",
    "AuditRecord",
    "AuditWriteError",
    "ConfigError",
    "Decision",
    "Declaration",
    "DeploymentRefused",
    "Disclosure",
    "GateResult",
    "GatedGenerator",
    "GenerationParams",
    "JsonlSink",
    "Licence",
    "ModelInfo",
    "ModelLoadError",
    "Policy",
    "PolicyEngine",
    "PrivacyMode",
    "Provenance",
    "RailError",
    "ScorerError",
    "ScorerSettings",
    "Screened",
    "Screening",
    "Stage",
    "ToxicityScorer",
    "Verdict",
    "Violation",
    "WatermarkSettings",
    "__version__",
    "detect_watermark",
    "get_licence",
    "import_card_file",
    "lint_card",
    "load_card",
    "load_declaration",
    "load_model",
    "load_policy",
    "normalize",
    "render_card",
    "verify_log",
]
