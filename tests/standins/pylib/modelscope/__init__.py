"""Stand-in for the parts of modelscope 1.40.2 that sandbox/stacks/modelscope_train.py uses
(see tests/standins/README.md)."""
