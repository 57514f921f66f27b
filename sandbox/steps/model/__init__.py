"""Model steps: training (``train``: the causal LM and the trainer base, ``train_clip``),
inference over a pool (``infer``) and the prompt-optimization steps (``prompts``)."""
