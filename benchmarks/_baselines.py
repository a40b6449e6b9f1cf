"""Baseline children for the benchmark suite (module level, so start methods find them)."""

from __future__ import annotations

from multiprocessing.connection import Connection


def pipe_sender(conn: Connection, n: int) -> None:
    """Send ``n`` small messages, then None."""
    for i in range(n):
        conn.send(i)
    conn.send(None)
    conn.close()
