"""Hydra finds this plugin by scanning the ``hydra_plugins`` namespace package (no
``hydra_plugins/__init__.py``!): ``optuna_sweeper`` registers ``hydra/sweeper=optuna``."""
