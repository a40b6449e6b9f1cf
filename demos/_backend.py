"""The demos' --backend and --address options, the same for every demo."""

from __future__ import annotations

import argparse
import os

__all__ = ["add_backend_options", "check_backend_options"]


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--backend`` and ``--address`` to ``parser``."""
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default=os.environ.get("ACTORS_BACKEND", "").strip().lower() or "local",
        help="local: each actor in a process of its own on this machine; ray: each actor "
        "as a Ray actor on a Ray cluster (default: $ACTORS_BACKEND, else local)",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="with --backend ray, the Ray cluster to use: host:port, or auto for the one "
        "running on this machine (default: $ACTORS_RAY_ADDRESS, else a local cluster "
        "started for the run and stopped at its end)",
    )


def check_backend_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse ``--address`` without ``--backend ray`` (exits with a usage error)."""
    if args.address is not None and args.backend != "ray":
        parser.error("--address names a Ray cluster: it needs --backend ray")
