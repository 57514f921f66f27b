"""Evaluators: the language model (``lm``, with its ``continuation_choice`` task), the data
itself (``data``), labels (``labels``), an LLM judge (``judge``), captions (``caption``) and
image-text retrieval (``retrieval``); what they share is in ``common``."""
