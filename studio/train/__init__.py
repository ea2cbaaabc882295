"""Stage ``train``: the detached training worker and the run directory it owns.

It owns the worker process (``worker``), backend choice and model loading for training
(``backend``), the run directory contract (``runs``, ``events``), hardware telemetry
(``telemetry``) and the sample replies answered while a run trains (``samples``). It may import
``data``, ``models`` and the ground; never ``chat``, ``export`` or a face.
"""
