"""Runnable demos: `python -m demos.counter`."""
