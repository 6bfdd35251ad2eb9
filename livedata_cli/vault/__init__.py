"""The vault: the only package that composes store, index, keys and audit.

``core`` opens a vault and keeps its state (the ``Vault``); the other modules
are the use cases and the upkeep that work on an open vault, each a set of
functions taking a ``Vault`` that the commands call: ``upload``, ``download``
(what a REF names) with ``reading`` and ``restore``, ``file_passwords``,
``share_links`` and ``share_to_account`` (the owner's side), ``maintenance``
(prune, verify, reclaim), ``rotation``, ``compaction``.  ``core`` imports none
of them at run time but the parts it needs itself (``replay``, ``store_locking``,
``file_passwords``); they import ``Vault`` for type checkers only.
"""
