"""Ground-level demo data: the generated corpora behind the built-in demo recipes and the tiny model.

It owns the tiny model's pretraining and ``tiny-pirate`` corpus (``tinydata``) and the ``smollm2-pirate``
corpus with its held-out questions (``piratedata``), and the preference pairs and GRPO prompts made from
it (``piratepairs``), and the tiny vision demo's shapes and captions (``shapes``). Plain Python, deterministic, no hub; it imports
nothing from studio, so every stage may use it, and it never imports a stage or a face.
"""
