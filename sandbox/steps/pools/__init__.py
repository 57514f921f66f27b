"""Data pools: the ``pool`` step family of the bottom-up workflow (Data-Juicer's data-pool
manipulators, with equal sizes, seeds and a random control made explicit).

A *pool* is a Parquet file plus a small description, passed between steps as a dict::

    {"name": "text_length_filter.text_len.high", "dataset": ".../pools/....parquet", "size": 1666,
     "kind": "stat" | "random" | "combined" | "merged" | "duplicated" | "joined",
     "bounds": {"text_length_filter.text_len": [lo, hi]}}   # stat pools and their combinations

Every pool file has a ``__row__`` column: the row's index in the dataset the pools were built
from. Intersections and unions are taken on it, so pools built from one dataset combine exactly.

Steps (all take and return *lists of pools*, so they chain and fan out with ``for_each``):

* ``PoolConstruction``: split an analysed dataset by every stat column into quantile bins
  (``split_ratios``, default thirds: low / middle / high) or fixed counts (``split_counts``),
  plus a seeded random control pool; optionally all made equal in size.
* ``PoolDownsampling``: seeded random subset of each pool (default: the smallest pool's size).
* ``PoolDuplication``: each pool repeated ``times`` times, optionally shuffled (seeded).
* ``PoolRanking``: order evaluated pools by metric keys (mean ± std over seeds, Welch t-test of
  every pool against the random control), write a table, a plot and the top pools.
* ``PoolCombination``: intersections of every subset (size >= 2) of the top pools, or only
  those a surrogate regression predicts best (``method="surrogate"``), or the candidates of a
  sequential search (``method="sequential"``).
* ``PoolSequentialSearch``: under ``method="sequential"``, trains the intersection the
  surrogate predicts best, refits on it and repeats, from the combination stage's own pools.
* ``SurrogateReport``: the surrogate's leave-one-out rank correlation over the trained pools.
* ``PoolMerging``: union of pools (one pool).
* ``PoolCartesianJoin``: row-wise cross product of two pool sets.
* ``RecipeExport``: the best pool's bounds as a Data-Juicer recipe YAML.
* ``ToJsonl`` / ``FromJsonl`` / ``ToCocoCaption``: format conversion.
"""
from sandbox.steps.pools.construction import (PoolCartesianJoin, PoolCombination, PoolConstruction,
                                              PoolDownsampling, PoolDuplication, PoolMerging,
                                              PoolSelection)
from sandbox.steps.pools.export import FromJsonl, RecipeExport, ToCocoCaption, ToJsonl
from sandbox.steps.pools.ranking import DecisionAccuracy, PoolRanking
from sandbox.steps.pools.sequential import PoolSequentialSearch
from sandbox.steps.pools.surrogate import SurrogateReport

__all__ = ["PoolConstruction", "PoolDownsampling", "PoolDuplication", "PoolCombination",
           "PoolSelection", "PoolMerging", "PoolCartesianJoin", "PoolRanking", "DecisionAccuracy",
           "RecipeExport", "ToJsonl", "FromJsonl", "ToCocoCaption", "SurrogateReport",
           "PoolSequentialSearch"]
