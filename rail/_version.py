"""The version of rail, in a module of its own so nothing needs the package's __init__ to read it."""

__version__ = "0.2.0"
