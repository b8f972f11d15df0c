"""Readers of the source databases (read-only): Synapse's and the bridge's."""
