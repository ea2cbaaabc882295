"""Stage ``train``: the detached training worker and the run directory it owns.

It owns the worker process (``worker``), backend choice and model loading for training
(``backend``), the run directory contract (``runs``, ``events``; the listing's cache ``summaries``) and
hardware telemetry (``telemetry``). It may import ``data``, ``models`` and the ground; never ``chat``, ``export`` or a face.
"""
