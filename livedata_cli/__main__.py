"""Allows ``python -m livedata_cli``."""

from livedata_cli.cli import main

raise SystemExit(main())
