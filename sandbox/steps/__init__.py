"""Pipeline steps: one module per kind (probe, refine, process, train, evaluate)."""
