"""Turn a chat conversation into one BLOOMZ prompt (BLOOMZ has no chat template of its own).

The default template writes the system message first, then each turn as ``User: …`` / ``Assistant: …``
lines, and ends with ``Assistant:`` — a cue BLOOMZ answers after, so prompt hygiene leaves it as it is.
Generation stops before the model starts a ``User:`` turn of its own (``DEFAULT_STOP``)::

    You are a helpful assistant.
    User: Translate to English: Je t'aime.
    Assistant:

``--chat-template FILE`` replaces it with a Jinja2 template (sandboxed, undefined names are errors) that
sees ``messages``: a list of ``{role, content}`` with role ``system``, ``developer``, ``user`` or
``assistant``. The whole rendered prompt — earlier turns included — is what the gate screens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from rail.errors import ConfigError

__all__ = ["DEFAULT_STOP", "DEFAULT_TEMPLATE", "ChatTemplate"]

DEFAULT_TEMPLATE = """\
{%- for m in messages -%}
{%- if m.role in ("system", "developer") -%}{{ m.content }}
{% elif m.role == "user" -%}User: {{ m.content }}
{% else -%}Assistant: {{ m.content }}
{% endif -%}
{%- endfor -%}
Assistant:"""
DEFAULT_STOP = ("\nUser:",)

_SAMPLE = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello."},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "Translate to English: Je t'aime."},
]


class ChatTemplate:
    """A compiled chat template and the stop sequences that end an assistant turn."""

    def __init__(
        self,
        source: str = DEFAULT_TEMPLATE,
        *,
        stop: Sequence[str] = DEFAULT_STOP,
        origin: str = "<default chat template>",
    ) -> None:
        self.source = source
        self.origin = origin
        self.stop = tuple(stop)
        env = SandboxedEnvironment(
            undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
        )
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                f"chat template is not valid Jinja2: {exc.message}",
                source=origin,
                line=exc.lineno,
                hint="fix the template syntax on that line",
            ) from None
        try:
            self.render(_SAMPLE)
        except ConfigError as exc:
            raise ConfigError(
                f"chat template fails on a sample conversation: {exc.detail}",
                source=origin,
                hint="use only `messages`, and `m.role` / `m.content` of each message",
            ) from None

    @classmethod
    def from_file(cls, path: str | Path, *, stop: Sequence[str] = DEFAULT_STOP) -> ChatTemplate:
        """Load a Jinja2 chat template file."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("chat template file not found", source=str(p), hint="check the path") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the chat template: {exc}", source=str(p)) from None
        return cls(text, stop=stop, origin=str(p))

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """Return the prompt for ``messages``; raise ConfigError when the template cannot render them."""
        try:
            return self._template.render(messages=[dict(m) for m in messages])
        except jinja2.TemplateError as exc:
            raise ConfigError(f"chat template failed: {exc}", source=self.origin) from None
