"""Silences one known, harmless asyncio error raised inside anyio's socket streams.

anyio's raw-socket streams wait for readiness with ``loop.add_reader(fd, f.set_result,
None)``. When the waiting task is cancelled (or the stream closed) in the same loop
iteration in which the fd became ready, the queued callback calls ``set_result`` on a
future that is already done, and asyncio prints "Exception in callback
Future.set_result(None) ... InvalidStateError" to stderr. Nothing is lost: the future's
owner has already moved on. We drop exactly that report and pass everything else on.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["install_noise_filter"]


def _is_stale_set_result(context: dict[str, Any]) -> bool:
    exc = context.get("exception")
    handle = context.get("handle")
    return (
        isinstance(exc, asyncio.InvalidStateError)
        and handle is not None
        and "Future.set_result" in repr(handle)
    )


def install_noise_filter(loop: asyncio.AbstractEventLoop) -> None:
    """Wrap ``loop``'s exception handler so the stale set_result report is dropped."""
    previous = loop.get_exception_handler()
    if getattr(previous, "_actors_filter", False):
        return

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if _is_stale_set_result(context):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler._actors_filter = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)
