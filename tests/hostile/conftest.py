"""The hostile corpus, built once per session in a scratch folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.hostile_corpus import build_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("hostile")
    return folder, build_corpus(folder)
