"""The safe pickle VM: instruction set, machine, allow-listed rebuilders, and the policy on globals."""
