"""Does a cheap run's verdict hold at a larger scale? ``RecipeLadder`` builds a ladder of recipes
of known, varied quality on one pool; ``TransferStudy`` trains and evaluates each at two or more
scales with seeds and reports, per metric, how often the small scale orders a pair of recipes as
the large one does (DataDecide's decision accuracy, arXiv 2504.11393), Spearman's rho and how
many pairs the large scale itself decides. ``conf/pipeline/transfer.yaml`` wires them
(``experiment=transfer``)."""
from sandbox.steps.transfer.ladder import RecipeLadder
from sandbox.steps.transfer.study import TransferStudy

__all__ = ["RecipeLadder", "TransferStudy"]
