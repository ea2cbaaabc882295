"""Stage ``serve``: put a tuned model behind an OpenAI-compatible endpoint on a real serving engine.

It owns the server directory, its typed ``serve.json`` and the proof that a live process is that server
(``servedir``), what a target is served as and by which engine, with the engine's own command line (``engines``),
starting one detached and stopping it (``server``), and the launcher that runs transformers' own server with an
API key checked in front of it and each request's figures recorded (``hfserve``), and what a server has done:
requests, tokens per second, time to first token, errors, its log's tail (``figures``). studio writes no HTTP server of its own: vLLM, llama.cpp's server or
``transformers serve`` answer the requests.

It may import ``chat``, ``export``, ``train``, ``data``, ``models`` and the ground (it merges an adapter through
``export`` and reads targets as ``chat`` does); never a face.
"""
