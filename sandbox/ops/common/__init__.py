"""Code that several OPs share and that is not itself an OP: character tables (``chars``), the
compiled per-character kernels (``kernels``) and MinHash kernels (``minhash_kernels``), per-batch
text views (``text_views``), word lists (``word_lists``), tokenization (``tokenization``), model
loading (``models``, ``clip``) and what the image and video OPs share (``media``).

Importing this package imports none of them (the kernels compile with numba: import them lazily).
"""
