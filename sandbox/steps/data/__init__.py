"""Data steps: loading pools (``load``, ``image_text_pool``), probing them (``probe``,
``probe_model``), refining the recipe (``refine``, ``refine_model_feedback``) and processing
(``process``)."""
