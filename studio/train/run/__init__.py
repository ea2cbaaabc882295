"""The run directory contract: what a run writes and how every reader reads it.

It owns the file names, ``run.json`` and the worker identity check (``rundir``), the event kinds and the one
``Status`` type (``events``), ``events.jsonl`` written and tailed (``eventlog``), the one fold of a run's
events (``runstate``), the listing's cache (``summaries``), what a user's reference to a run names, for every
command (``runref``), what is wrong with a damaged run's files (``damage``) the sample replies' history
for readers (``samplelog``) and the checks a higher stage adds to run creation (``recipehooks``).
It imports only the ground and itself: the trainer and the launchers build on it, never the other way.
"""
