"""Data pools: where samples come from, and how they are read and written."""
