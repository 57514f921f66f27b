"""Data I/O: reading and writing pools (``io``, ``stream``, ``jsonl``), media paths (``media``),
content fingerprints, pinned wheels and the default corpus. Nothing here is a step: the loaders
that use it are in ``sandbox.steps.data.load``."""
