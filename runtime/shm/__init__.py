"""Shared memory, used on both sides: segments, the segment pool, locks, sharing."""
