"""Hyper-parameter search on Optuna: studies whose trials are ordinary regimen runs (``regimen tune``)."""
