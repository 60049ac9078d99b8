"""``python -m mnn``: the same as the ``mnn`` command."""

from mnn.cli import main

raise SystemExit(main())
