"""``python -m mindrec.serve DIR [--port P] [--poll-s S] [--ready-file F]``."""
import argparse
from pathlib import Path

from mindrec.serve.app import serve


def main(argv=None) -> None:
    """Serve a version directory (see :func:`mindrec.serve.app.serve`)."""
    parser = argparse.ArgumentParser(prog="python -m mindrec.serve",
                                     description="serve the model versions of an online "
                                                 "trainer over HTTP on 127.0.0.1")
    parser.add_argument("versions", type=Path, help="the trainer's versions/ directory")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--poll-s", type=float, default=0.2,
                        help="seconds between looks for a new version")
    parser.add_argument("--ready-file", type=Path,
                        help="write the bound port here once the server accepts connections")
    args = parser.parse_args(argv)
    serve(args.versions, port=args.port, poll_s=args.poll_s, ready_file=args.ready_file)


if __name__ == "__main__":
    main()
