"""Allows ``python -m livedata_cli``."""

from livedata_cli.entry import main

raise SystemExit(main())
