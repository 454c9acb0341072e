"""`python -m mobile_app`: start the app on a desktop (the phone build runs the same App)."""
from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mobile_app",
                                description="Dopamine's diabetic-retinopathy screening app (desktop).")
    p.add_argument("--home", help="edge client state folder (default: $EDGE_HOME, else the platform's)")
    p.add_argument("--size", default="360x640", help="window size WIDTHxHEIGHT in pixels (default 360x640)")
    args = p.parse_args(argv)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
        if not (200 <= w <= 4000 and 200 <= h <= 4000):
            raise ValueError
    except ValueError:
        p.error(f"--size must look like 360x640 (200-4000 each), got {args.size!r}")
    args.width, args.height = w, h
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Kivy reads its own options from sys.argv unless told not to; ours are parsed above.
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    from edge_client.runtimes import current_platform   # reads the signals kivy.utils.platform reads

    if current_platform() not in ("android", "ios"):                     # phones: full screen
        from kivy.config import Config   # the window size must be set before the window exists
        Config.set("graphics", "width", str(args.width))
        Config.set("graphics", "height", str(args.height))
    from .app import DopamineApp
    DopamineApp(home=args.home).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
