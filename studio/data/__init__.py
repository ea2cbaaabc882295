"""Stage ``data``: raw rows in, ``input_ids`` + ``labels`` out.

It owns loading data files (``sources``), row formats (``formats``), the one encoder that
Preview, ``studio preview`` and the worker share (``encode``), the recipe-to-encoder step
(``prepare``), the token rendering of an encoded sample (``tokenview``), its fast twin for whole
data sets (``fastencode``, ``bytelevel``), the prepared-data cache and its processes (``cache``,
``cachekey``, ``cacheindex``, ``shards``) and finding a row by its text (``rowsearch``).
The preference and RL methods' rows and their one encode path live in ``preference``.
It may import ``lorastudio.models`` and the ground; never ``train``, ``chat``, ``export`` or a face.
"""
