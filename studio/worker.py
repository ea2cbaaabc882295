"""``python -m lorastudio.worker RUN_DIR``: the name run directories and docs use for the training worker.

The worker itself lives in :mod:`lorastudio.train.trainer.trainrun`; this entry point only forwards to it.
"""

from __future__ import annotations

if __name__ == "__main__":
    import sys

    from lorastudio.evaluate.intraining import install_worker
    from lorastudio.train.trainer.trainrun import main

    install_worker()  # train.eval_tasks' scores (the training stage cannot import the evaluate stage)
    sys.exit(main())
