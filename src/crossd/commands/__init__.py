"""One module per ``crossd`` sub-command, each with ``add_arguments(parser)`` and ``run(args) -> int``.

Commands only parse arguments and call library functions; nothing in the library imports them.
"""
