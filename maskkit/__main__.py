"""`python -m maskkit ...` (and `torchrun -m maskkit train ...`)."""

from maskkit.cli.app import main

main()
