"""Policies that enforce a RAIL licence's use restrictions on prompts, outputs and deployment declarations."""

from rail.policy.decision import Action, Decision, Stage, Verdict, Violation
from rail.policy.declaration import (
    AutomatedDecisions,
    Declaration,
    DisclosureSettings,
    load_declaration,
    load_declaration_text,
)
from rail.policy.engine import PolicyEngine
from rail.policy.loader import (
    DEFAULT_POLICY,
    Policy,
    Restriction,
    Rule,
    available_policies,
    load_policy,
    load_policy_text,
)

__all__ = [
    "DEFAULT_POLICY",
    "Action",
    "AutomatedDecisions",
    "Decision",
    "Declaration",
    "DisclosureSettings",
    "Policy",
    "PolicyEngine",
    "Restriction",
    "Rule",
    "Stage",
    "Verdict",
    "Violation",
    "available_policies",
    "load_declaration",
    "load_declaration_text",
    "load_policy",
    "load_policy_text",
]
