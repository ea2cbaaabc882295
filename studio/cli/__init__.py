"""The ``studio`` command: the TUI with no arguments, and a scriptable twin for every screen.

One module per command family, each a face over the engine (flags in, lines out; the work is the stages'):
``parser`` builds the argument parser and holds :func:`main` (the console script ``lorastudio.cli:main``, and
``python -m lorastudio.cli`` through ``__main__``) and the one-line ``studio mcp``; ``args`` the command-line
rules beyond argparse (overrides anywhere on the line, the TUI only at a terminal); ``console`` the progress bar
and the rich console every command prints with; ``recipe_cmds`` ``recipes``, ``recipe show`` and ``validate``;
``preview_cmds`` ``preview`` and ``prepare``, with the one preview builder the MCP server's ``preview`` tool
shares; ``train_cmds`` ``train`` (Slurm and several machines included), ``resume``, ``attach``, ``stop``,
``build-tiny`` and following a run; ``runs_cmds`` ``runs`` and its ``delete``, ``note``, ``compare`` and
``samples``; ``sweep_cmds`` ``sweep`` (start, stop, rank); ``chat_cmds`` ``chat``; ``export_cmds`` ``export``;
``eval_cmds`` ``eval`` and ``evals``; ``serve_cmds`` ``serve`` (start, list, stop).
"""

from __future__ import annotations

from lorastudio.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
