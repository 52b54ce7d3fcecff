"""Rule sets: the TOML files that say what gets flagged (``default.toml``, ``example.toml``)
and the model that reads them (``rules.model``)."""
