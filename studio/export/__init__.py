"""Stage ``export``: take a run's adapter out of studio (adapter, merged model, GGUF, hub push).

It owns the one entry point with sizes estimated and measured (``exporter``), what an export starts from
(``origin``), the merged model (``merge``), the GGUF writer (``ggufwrite``) and its Ollama ``modelfile``,
the model ``card``, the hub upload (``push``) and the hidden folder renamed into place (``staging``).

It may import ``train``, ``data``, ``models`` and the ground; never ``chat`` or a face.
"""
