"""Outside stacks: programs that run in an environment of their own (``programs``:
``ExternalTrainer``, ``ExternalInfer``, ``ExternalEvaluator``, named in YAML as
``sandbox.steps.external.ExternalTrainer`` ...) and the conversions between our pools and their
file formats (``formats``)."""
from sandbox.steps.external.programs import (ExternalEvaluator, ExternalInfer, ExternalProgram,
                                             ExternalTrainer, LiveMetrics)

__all__ = ["ExternalProgram", "ExternalTrainer", "ExternalInfer", "ExternalEvaluator",
           "LiveMetrics"]
