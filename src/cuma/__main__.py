"""``python -m cuma``: the ``cuma`` command, for launchers such as ``torchrun -m cuma``."""

from cuma.cli import main

main()
