"""Observation, used on both sides: structured logs, tracing, the probe."""
