"""``python -m lorastudio.cli``: the ``studio`` command run by this interpreter (scripts and tests use it)."""

from __future__ import annotations

import sys

from lorastudio.cli.parser import main

if __name__ == "__main__":  # imported (a test importing every module): nothing runs
    sys.exit(main())
