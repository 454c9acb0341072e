"""`python -m federation split-data | up | run | down | deploy` (see docs/OPERATORS.md)."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from federation.launch import deploy_cli, split_data
    parser = argparse.ArgumentParser(prog="python -m federation", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    split_data.add_arguments(sub.add_parser("split-data", help="one data set -> per-hospital folders"))
    deploy_cli.add_commands(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "split-data":
            return split_data.run(args)
        return deploy_cli.run(args)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
