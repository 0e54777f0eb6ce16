"""``python -m collab_operator``: the same as ``collab operator``."""

from collab_operator.main import main

main()
