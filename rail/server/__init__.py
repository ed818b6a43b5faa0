"""The HTTP face of the gate: ``rail serve``, an OpenAI-compatible server with the gate on every route.

:func:`build_service` puts a server together (model, tenants with their gates, audit group commit,
limits, metrics); :func:`create_app` returns its ASGI application. The command line is ``rail serve``
(:mod:`rail.cli.serve`); the README's "Serving" section describes the behaviour.
"""

from rail.server.app import create_app
from rail.server.auth import KeyLimits, KeySpec, keys_from_cli, load_keys_file
from rail.server.chat import ChatTemplate
from rail.server.limits import ServerLimits
from rail.server.service import Service, Tenant, build_service, check_deployments, resolve_tenants

__all__ = [
    "ChatTemplate",
    "KeyLimits",
    "KeySpec",
    "ServerLimits",
    "Service",
    "Tenant",
    "build_service",
    "check_deployments",
    "create_app",
    "keys_from_cli",
    "load_keys_file",
    "resolve_tenants",
]
