"""``python -m lorastudio.cli``: the ``studio`` command run by this interpreter (scripts and tests use it)."""

from __future__ import annotations

import sys

from lorastudio.cli.parser import main

sys.exit(main())
