"""ocishim-runtime: the runc-compatible wrapper's entry point (ocishim.integrations.wrapper).

Pass-through (every command but create and run) is the first thing main decides, from
argv alone, and imports nothing of the pipeline: see the wrapper's docstring.
"""

from .integrations.wrapper import main

__all__ = ["main"]
