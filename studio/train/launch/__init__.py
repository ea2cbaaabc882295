"""Runs as processes: created, started, supervised, queued, managed and compared.

It owns run directories created and their detached workers started, listed and found (``runs``), the
supervisor of a several-device run (``supervisor``: ``accelerate launch`` under it), training on several
machines (``nodes``: one supervisor per node, node 0 writes the run; ``rendezvous``: nodes started in any order
meet at node 0's address) and on Slurm (``slurm``: the sbatch script, the job's state, scancel and
resubmission), whether a model fits in the memory free now
(``memoryfit``: the Launch sheet's and chat admission's one rule), notes, delete, resume and checkpoints
(``manage``), comparing runs (``compare``), the runs still going when the TUI closes (``live``) and grids of
runs (``sweep``).
It may import ``train.run``, ``train.trainer``, ``data``, ``models`` and the ground.
"""
