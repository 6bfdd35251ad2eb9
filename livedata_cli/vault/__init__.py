"""The vault: the only package that composes store, index, keys and audit.

``core`` opens a vault and keeps its state; the other modules are the use cases and
the upkeep that work on an open vault (upload, download, sharing, maintenance ...).
"""
