"""Command-line interface: ``gwnpe ls FILE`` prints the provenance of an output."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import GwnpeError


def _print_tree(obj, indent: int = 0, out=sys.stdout) -> None:
    pad = "  " * indent
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v and not (isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v)):
                print(f"{pad}{k}:", file=out)
                _print_tree(v, indent + 1, out)
            elif isinstance(v, str) and "\n" in v:
                print(f"{pad}{k}: |", file=out)
                for line in v.rstrip().splitlines():
                    print(f"{pad}  {line}", file=out)
            else:
                print(f"{pad}{k}: {json.dumps(v) if not isinstance(v, str) else v}", file=out)
    elif isinstance(obj, list):
        for v in obj:
            print(f"{pad}-", file=out)
            _print_tree(v, indent + 1, out)
    else:
        print(f"{pad}{obj}", file=out)


def cmd_ls(args) -> int:
    from .provenance import read_provenance

    try:
        prov = read_provenance(args.file)
    except FileNotFoundError:
        print(f"gwnpe ls: '{args.file}' does not exist", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gwnpe ls: cannot read '{args.file}': {exc}", file=sys.stderr)
        return 2
    if prov is None:
        print(f"gwnpe ls: '{args.file}' carries no gwnpe provenance", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(prov, indent=2, sort_keys=True))
        return 0
    print(f"file: {args.file}")
    if not args.inputs:
        prov = {k: v for k, v in prov.items() if k != "inputs"} | {
            "inputs": {k: v["path"] for k, v in prov.get("inputs", {}).items()}
        }
    _print_tree(prov)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gwnpe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="print the settings, inputs and package versions stored in a gwnpe output")
    ls.add_argument("file")
    ls.add_argument("--json", action="store_true", help="machine-readable JSON")
    ls.add_argument("--inputs", action="store_true", help="also print the inputs' full provenance")
    ls.set_defaults(func=cmd_ls)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except GwnpeError as exc:
        print(f"gwnpe: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
