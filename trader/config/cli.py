"""`python -m polymm.trader.config`: print the key reference or an example config, or check a file."""
import argparse
import sys

from polymm.trader.config.checks import warnings
from polymm.trader.config.docs import example_toml, markdown_reference
from polymm.trader.config.load import load_config
from polymm.trader.config.schema import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polymm.trader.config", description="polymm trader configuration schema")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown-reference", action="store_true", help="print the key reference as a markdown table")
    group.add_argument("--example-toml", action="store_true", help="print a commented config file with every key")
    group.add_argument("--check", metavar="FILE", help="validate a config file; exit 1 on errors")
    args = parser.parse_args(argv)
    if args.markdown_reference:
        sys.stdout.write(markdown_reference())
    elif args.example_toml:
        sys.stdout.write(example_toml())
    else:
        try:
            cfg = load_config(args.check)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        for w in warnings(cfg):
            print(f"warning: {w}")
        print(f"{args.check}: ok")
    return 0
