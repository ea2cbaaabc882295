"""Stage ``train``: the detached training worker and the run directory it owns.

It owns the worker process (``worker``), backend choice and model loading for training
(``backend``), the run directory contract (``runs``, ``events``) and hardware telemetry
(``telemetry``). The preference and RL methods' trainers are built in ``methods``, GRPO's
reward functions in ``rewards``. It may import ``data``, ``models`` and the ground; never ``chat``, ``export`` or a face.
"""
