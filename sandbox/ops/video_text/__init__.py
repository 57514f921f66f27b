"""Video-caption OPs: ``filters`` that score a sample's videos against its text."""
