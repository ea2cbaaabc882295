"""Stage ``data``: raw rows in, ``input_ids`` + ``labels`` out.

It owns loading data files (``sources``, and ``arrowwarm`` converting a large one in a helper), row formats (``formats``), the one encoder that
Preview, ``studio preview`` and the worker share (``encode``), the recipe-to-encoder step
(``prepare``), the token rendering of an encoded sample (``tokenview``), its fast twin for whole
data sets and their statistics (``fastencode``, ``bytelevel``, ``wordplan``, and ``arrowturns`` reading rows
from Arrow a column at a time), the prepared-data cache, its Arrow
writer and its processes (``cache``, ``arrowwriter``, ``cachekey``, ``cacheindex``, ``shards``),
finding a row by its text (``rowsearch``), what ``studio validate`` checks without the data (``checks``)
and the preference and RL methods' rows with their one encode path and their cache entries
(``preference``, ``methodcache``), and rows with images for a vision-language model, the vision branch
of the encode path (``vision``).
It may import ``lorastudio.models`` and the ground; never ``train``, ``chat``, ``export`` or a face.
"""
