"""``python -m collapse_theory`` runs the command-line interface."""

from .cli import main

raise SystemExit(main())
