"""Commands of the ``rail`` CLI (filled in by the feature that owns them)."""

COMMANDS: list = []
