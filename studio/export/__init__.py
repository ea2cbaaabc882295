"""Stage ``export``: take a run's adapter out of studio (adapter, merged model, GGUF, hub push).

It may import ``train``, ``data``, ``models`` and the ground; never ``chat`` or a face.
"""
