"""`crossd bench` (not implemented yet)."""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("crossd bench is not implemented yet")
