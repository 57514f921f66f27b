"""The command lines of the package's entry points: each ``__main__`` module parses nothing itself
and calls ``main`` here (``python -m sandbox.assets``: ``sandbox.cli.assets``)."""
