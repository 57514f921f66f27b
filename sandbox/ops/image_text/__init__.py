"""Image-caption OPs: ``filters`` that score a sample's images against its text."""
