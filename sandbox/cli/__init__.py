"""The command lines of the package's entry points: each ``__main__`` module parses nothing itself
and calls ``main`` here (``python -m sandbox.assets``: ``sandbox.cli.assets``; ``python -m
sandbox``, once Hydra composed the config: ``sandbox.cli.experiment``)."""
