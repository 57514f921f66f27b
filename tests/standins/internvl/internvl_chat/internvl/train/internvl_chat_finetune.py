# Stand-in for InternVL's fine-tuning script: tests/standins/bin/torchrun reads its arguments.
