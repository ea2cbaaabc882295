"""Stage ``train``: the detached training worker and the run directory it owns.

It owns the worker process (``worker``), backend choice and model loading for training
(``backend``), the run directory contract (``runs``, ``events``) and hardware telemetry
(``telemetry``), training on several machines (``nodes``: one supervisor per node, node 0 writes the run)
and on Slurm (``slurm``: the sbatch script, the job's state, scancel and resubmission). It may import ``data``, ``models`` and the ground; never ``chat``, ``export`` or a face.
"""
