"""OPs over fields of any sample: ``filters`` (a field's value, a file suffix) and ``selectors``
(picking samples from the whole pool)."""
