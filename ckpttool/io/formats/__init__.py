"""Readers, one per on-disk format: torch zip/legacy/tar/TorchScript, safetensors, shard sets, folders."""
