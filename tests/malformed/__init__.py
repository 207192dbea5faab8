"""Malformed checkpoints: one-line errors, bounded time and memory."""
