"""Run the rail command as ``python -m rail.cli``."""

from rail.cli import main

main()
