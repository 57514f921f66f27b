"""Video OPs: ``filters``, ``mappers`` and ``deduplicators`` of the videos of a sample
(``videos``)."""
