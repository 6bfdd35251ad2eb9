"""livedata: a command-line secure vault. Files are encrypted on this machine before they reach any store."""

__version__ = "0.1.0"

import sys as _sys
from types import ModuleType as _ModuleType

# httpx's package imports its own command-line tool (rich, pygments, click) when
# it loads: some 40 ms of every command that talks to a server.  livedata never
# runs that tool; httpx falls back to a stub when this module has no ``main``.
_sys.modules.setdefault("httpx._main", _ModuleType("httpx._main"))
