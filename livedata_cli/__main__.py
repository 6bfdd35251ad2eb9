"""Allows ``python -m livedata_cli``."""

from livedata_cli._start import main

raise SystemExit(main())
