"""OPs scored by a CLIP model (image-text similarity and matching, video frames vs text)."""
from __future__ import annotations
