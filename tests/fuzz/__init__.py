"""Property-based mutation tests of the readers."""
