"""Whole data sets encoded fast and cached: the fast twin of the reference encoder and the prepared-data cache.

It owns the fast encoder for whole data sets and their statistics (``fastencode``, its byte-level BPE
``bytelevel`` and word plan ``wordplan``, and ``arrowturns`` reading rows from Arrow a column at a time), the
prepared-data cache (``cache``: entries, hits, the SFT path), its Arrow writer (``arrowwriter``), its key
(``cachekey``), its index and eviction (``cacheindex``), its worker processes (``shards``) and the preference
and RL methods' entries with their cached encode step (``methodcache``).
The fast path must give the reference encoder's ids and labels (tests check it row by row). It may import the
reference modules of ``data``, ``models`` and the ground; no module of ``data`` outside it imports it.
"""
