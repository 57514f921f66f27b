"""Pipeline steps, in rooms: ``base`` (the step contract), ``data`` (loading, probing, refining,
processing pools), ``model`` (training, inference, prompt steps), ``evaluate`` (every evaluator),
``pools`` (the bottom-up workflow's pool steps) and ``external`` (outside programs and the format
conversions between their files and ours). Steps do not import each other across rooms."""
