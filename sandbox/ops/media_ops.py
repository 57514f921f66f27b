"""Image and video deduplicators and mappers with Data-Juicer's names."""
from __future__ import annotations
