"""Hostile checkpoints: nothing they name is ever run."""
