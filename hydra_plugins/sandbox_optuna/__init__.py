"""Hydra finds this plugin by scanning the ``hydra_plugins`` namespace package (no
``hydra_plugins/__init__.py``!): ``optuna_sweeper`` registers ``hydra/sweeper=sandbox_optuna``
(and ``optuna``, the name hydra-optuna-sweeper users know); ``search_path`` adds ``conf/`` here,
which holds the ``hydra/sweeper/sampler`` group."""
