"""Adds this plugin's ``conf/`` to every Hydra app's config search path: the
``hydra/sweeper/sampler`` group (``random``, ``tpe``, ``nsgaii``, ``cmaes``, ``qmc``, ``gp``,
``grid``). Files found on the search path come before ConfigStore nodes, so these options stay
ours even when hydra-optuna-sweeper, which stores its own ``hydra/sweeper/sampler`` nodes, is
installed too (and that case is reported once, see ``_compat``)."""
from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class SandboxOptunaSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from hydra_plugins.sandbox_optuna._compat import warn_if_upstream_installed

        search_path.append(provider="sandbox-optuna",
                           path="pkg://hydra_plugins.sandbox_optuna.conf")
        warn_if_upstream_installed()
