"""Stage ``train``: the detached training worker and the run directory it owns.

It owns the worker process (``worker``), backend choice and model loading for training
(``backend``), the run directory contract (``runs``, its file names and ``run.json`` in ``rundir``; the event
kinds and the one ``Status`` type in ``events``, ``events.jsonl`` written and tailed in ``eventlog``, the one fold
of a run's events in ``runstate``;
what a user's reference to a run names, for every command: ``runref``;
the listing's cache ``summaries``; what is wrong with a damaged run's files, ``damage``), hardware telemetry
(``telemetry``), whether a model fits in the memory free now (``memoryfit``: the Launch sheet's and chat
admission's one rule), the worker's warnings as log events (``logcapture``), one run per device and CPU shares
(``queue``), more than one device: the supervisor and each process's part (``launch``, ``distributed``),
training on several machines (``nodes``: one supervisor per node, node 0 writes the run; ``rendezvous``: nodes
started in any order meet at node 0's address, which names the run) and on Slurm
(``slurm``: the sbatch script, the job's state, scancel and resubmission), which adapter of a run to load
(``adapters``), managing runs (``manage``), comparing them (``compare``), the runs still going when the TUI
closes (``live``), the experiment trackers a run also reports to (``trackers``), grids of runs (``sweep``),
full and freeze tuning and the embeddings' own learning rate (``fulltune``), the preference and RL
methods' trainers (``methods``) and the TRL release their
losses need (``trlneeds``), GRPO's reward functions (``rewards``), reward models (``rewardmodel``: trained by
``train.method: reward``, scoring as a GRPO reward), the sample
replies answered while a run trains (``samples``, their history for readers in ``samplelog``), SFT of a
vision-language model with its processor (``vision``), and the ``lora`` section's variants onto peft
(``loravariants``: DoRA, PiSSA/OLoRA/LoftQ init, LoRA+, their checks).
It may import ``data``, ``models`` and the ground; never ``chat``, ``export`` or a face.
"""
