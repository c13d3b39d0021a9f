"""``python -m bregzoo_cli``: the same app as the ``bregzoo`` script, for launchers that need a module
(``accelerate launch -m bregzoo_cli train ...``, ``torchrun -m bregzoo_cli train ...``)."""

from bregzoo_cli.app import main

main()
