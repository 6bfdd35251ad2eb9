"""The vault: the only package that composes store, index, keys and audit.

``core`` opens a vault and keeps its state (the ``Vault``); the other modules
are the use cases and the upkeep that work on an open vault, each a set of
functions taking a ``Vault`` that the commands call: ``upload``, ``download``
(what a REF names) with ``reading`` and ``restore``, ``file_passwords``,
``share_links`` and ``share_to_account`` (the owner's side), ``maintenance``
(prune, verify, reclaim), ``rotation``, ``compaction``.  ``core`` imports only
the parts it needs itself (``replay`` to sync, ``store_locking``, the envelope
opener of ``file_passwords`` and the key history of ``rotation`` for data keys,
the copy deletion of ``share_links`` for ``rm --purge``); every part imports
``Vault`` for type checkers only, so none closes an import circle.
"""
