"""``python -m lorastudio.worker RUN_DIR``: the name run directories and docs use for the training worker.

The worker itself lives in :mod:`lorastudio.train.worker`; this entry point only forwards to it.
"""

from __future__ import annotations

if __name__ == "__main__":
    import sys

    from lorastudio.train.worker import main

    sys.exit(main())
