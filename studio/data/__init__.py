"""Stage ``data``: raw rows in, ``input_ids`` + ``labels`` out.

The reference path, at this level: loading data files (``datasource``, and ``arrowwarm`` converting a large
one in a helper), row formats (``formats``), the one encoder that Preview, ``studio preview`` and the worker
share (``encode``), the recipe-to-encoder step (``prepare``), the token rendering of an encoded sample
(``tokenview``), finding a row by its text (``rowsearch``), what ``studio validate`` checks without the data
(``checks``), the preference and RL methods' rows with their one encode path (``preference``), and rows with
images for a vision-language model, the vision branch of the encode path (``imagerows``).
Whole data sets, in the sub-package ``prepared``: the fast twin of the encoder and the prepared-data cache.
It may import ``lorastudio.models`` and the ground; never ``train``, ``chat``, ``export`` or a face.
"""
