"""Stage ``models``: where weights, tokenizers and chat templates come from, and what they cost.

It owns model name resolution and tokenizer loading (``sources``), the named chat templates
(``templates``), the offline tiny model and its pretraining data (``tiny``, ``tinydata``)
the pirate corpora of the demos (``piratedata``, ``piratepairs``) and the VRAM estimate (``estimate``).
It imports only the ground (``recipe``, ``registry``, ``paths``, ``errors``, ``quiet``); never ``data`` or above.
"""
