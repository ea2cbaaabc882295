"""lorastudio: fine-tune open LLMs with (Q)LoRA from the terminal.

The folder is called ``studio/`` but installs as ``lorastudio``; a bare
``import studio`` would shadow the top-level ``studio`` package that unsloth ships.
"""

from __future__ import annotations

if __name__ != "lorastudio":
    raise ImportError(
        f"this folder installs as 'lorastudio'; import lorastudio, not {__name__!r} "
        "(run `pip install -e .` from the repository root)"
    )

__version__ = "0.1.0"
