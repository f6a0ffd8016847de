"""`crossd transfer` (not implemented yet)."""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("crossd transfer is not implemented yet")
