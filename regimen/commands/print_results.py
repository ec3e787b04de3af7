"""The ``print-results`` command: one row of key metrics per run directory (placeholder, being written)."""
