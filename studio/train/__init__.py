"""Stage ``train``: a training run, from the directory it owns to the process that trains.

Three sub-packages, importing one way (``launch`` -> ``trainer`` -> ``run``):

- ``run``: the run directory contract, what a run writes and every reader reads (files and ``run.json``,
  the typed events, the one fold of them, the listing's summaries, what names a run, what is damaged);
- ``trainer``: the glue onto TRL, peft and transformers that runs inside the worker process (the worker's
  main, the backend, the methods' trainers, rewards, samples, trackers, adapter variants, telemetry, the device queue);
- ``launch``: starting, supervising and managing runs as processes (run directories created and workers
  started, more than one device, several machines, Slurm, sweeps, delete/resume/stop,
  Compare, whether a model fits in the memory free now).

It may import ``data``, ``models`` and the ground; never ``chat``, ``export`` or a face.
"""
