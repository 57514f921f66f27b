"""Image OPs: ``filters`` and ``deduplicators`` of the images of a sample (``images``)."""
