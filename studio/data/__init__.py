"""Stage ``data``: raw rows in, ``input_ids`` + ``labels`` out.

It owns loading data files (``sources``), row formats (``formats``), the one encoder that
Preview, ``studio preview`` and the worker share (``encode``), the recipe-to-encoder step
(``prepare``) and the token rendering of an encoded sample (``tokenview``).
It may import ``lorastudio.models`` and the ground; never ``train``, ``chat``, ``export`` or a face.
"""
