"""`crossd pretrain` (not implemented yet)."""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("crossd pretrain is not implemented yet")
