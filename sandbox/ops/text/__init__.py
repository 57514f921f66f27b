"""Text OPs: ``filters``, ``mappers`` and ``deduplicators`` of the samples' text."""
