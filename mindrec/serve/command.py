"""The serving process's command line, shared by ``python -m mindrec.serve`` and
``mindrec-bench serve``. Importing it imports neither MindSpore nor the HTTP server."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a serving process."""
    parser.add_argument("versions", type=Path, help="the trainer's versions/ directory")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--poll-s", type=float, default=0.2,
                        help="seconds between looks for a new version")
    parser.add_argument("--ready-file", type=Path,
                        help="write the bound port here once the server accepts connections")


def run(args: argparse.Namespace) -> None:
    """Serve ``args.versions`` until interrupted (see :func:`mindrec.serve.app.serve`)."""
    from mindrec.serve.app import serve
    serve(args.versions, port=args.port, poll_s=args.poll_s, ready_file=args.ready_file)


def main(argv: list[str] | None = None) -> None:
    """``python -m mindrec.serve DIR [--port P] [--poll-s S] [--ready-file F]``."""
    parser = argparse.ArgumentParser(prog="python -m mindrec.serve",
                                     description="serve the model versions of an online "
                                                 "trainer over HTTP on 127.0.0.1")
    add_arguments(parser)
    run(parser.parse_args(argv))
