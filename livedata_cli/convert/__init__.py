"""Format conversion of vault files: engines found at run time, a local job queue.

``base`` holds the engine interface and registry, one module per engine
(``images``, ``pandoc``, ``libreoffice``, ``ffmpeg``, ``cloudconvert``),
``queue`` the job queue, and ``service`` the use case that composes them
with the vault.
"""
