"""A rewrite writes globals back by name: a name read from a hostile STACK_GLOBAL must not inject opcodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckpttool.errors import OutputRefused
from ckpttool.io import open_checkpoint
from ckpttool.io.write.checkpoint import write_checkpoint
from tests.hostile.hostile_corpus import pkl, sglob, torch_zip, uni


@pytest.mark.parametrize("name", ["A\nos\nsystem", "Caf\u00e9", "", "A\r"])
def test_a_global_name_a_checkpoint_cannot_hold_is_refused(tmp_path: Path, name: str) -> None:
    body = b"}(" + uni("x") + sglob("mypkg", name) + b")\x81u"  # {'x': mypkg.<name>()}
    path = tmp_path / "odd.pt"
    path.write_bytes(torch_zip({"archive/data.pkl": pkl(body)}))
    ckpt = open_checkpoint(path)
    with pytest.raises(OutputRefused, match="cannot hold"):
        write_checkpoint(ckpt.tree, tmp_path / "copy.pt")
    assert not (tmp_path / "copy.pt").exists()
