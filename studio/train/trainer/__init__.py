"""The trainer glue: what runs inside the worker process, onto TRL, peft and transformers.

It owns the worker's main (``trainrun``: ``python -m lorastudio.worker RUN_DIR``), backend choice and model
loading (``backend``), the preference and RL methods' trainers (``methods``) and the TRL release their losses
need (``trlneeds``), GRPO's reward functions (``rewards``), reward models (``rewardmodel``: trained by
``train.method: reward``, scoring as a GRPO reward), full and freeze tuning and the embeddings' own learning
rate (``fulltune``), the ``lora`` section's variants onto peft (``loravariants``: DoRA, PiSSA/OLoRA/LoftQ
init, LoRA+, their checks), which adapter of a run to load (``adapters``), SFT of a vision-language model with
its processor (``vlmtrain``), each process's part of a several-device run (``distributed``), one run per device and fair CPU
shares, waited for by the worker (``queue``), the sample replies
answered while a run trains (``samples``), the experiment trackers a run also reports to (``trackers``),
hardware telemetry where "no GPU" is a normal value (``telemetry``) and the worker's warnings as log events
(``logcapture``).
It may import ``train.run``, ``data``, ``models`` and the ground; never ``train.launch``.
"""
