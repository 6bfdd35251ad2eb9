"""The vault master key: key slots in the store, unlocking, KMS, and the OS keyring cache."""
