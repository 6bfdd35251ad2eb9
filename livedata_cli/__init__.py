"""livedata: a command-line secure vault. Files are encrypted on this machine before they reach any store."""

__version__ = "0.1.0"
