"""Keep library chatter (progress bars, deprecation warnings) off the user's terminal."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # loading a data file draws one on stderr
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
    # kernels: transformers and bitsandbytes look for optional hub kernels when they are imported (peft brings
    # bitsandbytes in); offline, each look says "Skipping publisher trust check for 'kernels-community/…'".
    for name in ("bitsandbytes", "transformers", "peft", "trl", "datasets", "accelerate", "kernels"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # bitsandbytes' own word that its CPU kernel did not come from the hub; the worker raises bitsandbytes back
    # to warnings for the Monitor's log (train/trainer/logcapture.py), so this one is dropped at its logger.
    cpu_ops = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if _HubKernelNotice not in {type(f) for f in cpu_ops.filters}:
        cpu_ops.addFilter(_HubKernelNotice())


class _HubKernelNotice(logging.Filter):
    """Drops a library's notice about an optional kernel from the Hugging Face hub (``kernels-community/…``):
    studio never asks for one, and offline the notice says only that it could not be fetched."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "kernels-community" not in record.getMessage()
