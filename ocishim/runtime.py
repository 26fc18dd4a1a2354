"""ocishim-runtime: the runc-compatible wrapper (see ocishim.integrations.wrapper)."""

from .integrations.wrapper import main

__all__ = ["main"]
