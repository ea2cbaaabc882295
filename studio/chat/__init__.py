"""Stage ``chat``: load a base model (and a run's adapter) once and stream replies.

It owns the chat engine, sampling settings, streaming decode and transcripts (``engine``).
It may import ``train``, ``data``, ``models`` and the ground; never ``export`` or a face.
"""
