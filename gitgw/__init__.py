"""gitgw: a Git-native AI gateway and workflow engine.

The public API is deliberately small; everything else is reached through the CLI
(`gitgw --help`) or the modules named in `docs/architecture.md`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
