"""Screenshot a report page with headless Chromium: ``python -m bench.screenshot``.

Checks that ``report.html`` renders with its plots in a real browser. Needs Chromium
(Debian: ``apt-get install chromium``); it is not a Python dependency, so this is a
script to run by hand, not part of ``make test``.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Flags for a closed network: no background connections, no sandbox as root.
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--hide-scrollbars")


def screenshot(html: Path, png: Path, width: int = 1400, height: int = 4000) -> Path:
    """Render the top ``height`` pixels of ``html`` in a ``width``-pixel window to ``png``;
    raises RuntimeError when Chromium is missing or fails."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise RuntimeError("chromium not found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([browser, *_FLAGS, f"--user-data-dir={profile}",
                               f"--window-size={width},{height}",
                               f"--screenshot={png.resolve()}", html.resolve().as_uri()],
                              capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.screenshot", description=__doc__)
    parser.add_argument("--html", type=Path, default=Path("results/report.html"))
    parser.add_argument("--out", type=Path, default=Path("results/report.png"))
    parser.add_argument("--width", type=int, default=1400, help="window width, pixels")
    parser.add_argument("--height", type=int, default=4000,
                        help="window height, pixels (what the screenshot shows)")
    args = parser.parse_args(argv)
    try:
        print(screenshot(args.html, args.out, args.width, args.height))
    except RuntimeError as exc:
        print(f"screenshot: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
