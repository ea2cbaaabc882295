"""Stage ``chat``: load a base model (and a run's adapter) once and stream replies.

It owns the chat engine, sampling settings, streaming decode and transcripts (``engine``), chat
targets other than a run, such as export folders (``targets``), and the held-out style check, base
vs tuned (``heldout``).
It may import ``train``, ``data``, ``models`` and the ground; never ``export`` or a face.
"""
