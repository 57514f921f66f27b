"""Model inference inside the data loop: message builders, backends (transformers, vLLM, any
OpenAI-compatible server) and the embedded default model. The ``infer`` step
(``sandbox.steps.model.infer``) runs them over a pool; see its docstring."""
from sandbox.infer.backends import APIBackend, HFBackend, Reply, VLLMBackend
from sandbox.infer.messages import (BUILDERS, PARSERS, build_messages, build_messages_for_math_qa,
                                    parse_output)
from sandbox.infer.model import default_model_dir

__all__ = ["APIBackend", "HFBackend", "VLLMBackend", "Reply", "BUILDERS", "PARSERS",
           "build_messages", "build_messages_for_math_qa", "parse_output", "default_model_dir"]
