"""Stage ``chat``: load a base model (and a run's adapter) once and stream replies.

It owns the chat engine, sampling settings, streaming decode and transcripts (``engine``), chat
targets other than a run, such as export folders (``targets``), the held-out style check, base
vs tuned (``heldout``), the memory admission and CPU thread share of a chat beside a live run
(``admission``), the feedback file that turns marked or edited replies into training rows (``feedback``),
the engine beside the local one that chats with any OpenAI-compatible endpoint, a served run among them
(``endpoint``, through the ``openai`` client), and one reply about an image from a vision-language model's run
(``imagechat``).
It may import ``train``, ``data``, ``models`` and the ground; never ``export`` or a face.
"""
