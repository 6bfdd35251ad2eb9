"""Cryptography of livedata: the container format, key wrapping and key derivation; the only package that touches primitives."""
