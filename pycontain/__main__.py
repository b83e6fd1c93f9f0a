"""``python3 -m pycontain`` is the ``pycontain`` command."""

from pycontain.cli import run_main

run_main()
