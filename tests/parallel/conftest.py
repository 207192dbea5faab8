"""The real DCP folders of ``tests/dcp`` serve here too."""

from tests.dcp.conftest import dcp_folders

__all__ = ["dcp_folders"]
