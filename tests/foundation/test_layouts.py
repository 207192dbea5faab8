"""Each framework layout is recognised, with its sections where the framework puts them."""

from __future__ import annotations

import pytest

import ckpttool
from tests.conftest import FIXTURES

EXPECTED = {
    "model1_state_dict.pt": ("state_dict", {"model": ""}),
    "model1_state_dict.safetensors": ("state_dict", {"model": ""}),
    "model1_state_dict_legacy.pt": ("state_dict", {"model": ""}),
    "model1_torchscript.pt": ("torchscript", {"model": ""}),
    "model1_train.pt": ("yolov5", {"model": "model", "ema": "ema", "optimizer": "optimizer",
                                   "scheduler": "scheduler", "scaler": "scaler"}),
    "model1_release.pt": ("yolov5", {"model": "model"}),
    "ultralytics_last.pt": ("ultralytics", {"model": "ema", "ema": "ema", "optimizer": "optimizer"}),
    "timm_checkpoint.pth.tar": ("timm", {"model": "state_dict", "ema": "state_dict_ema"}),
    "lightning.ckpt": ("lightning", {"model": "state_dict", "optimizer": "optimizer_states.0",
                                     "scheduler": "lr_schedulers.0"}),
    "lightning_ema.ckpt": ("lightning", {"model": "current_model_state", "ema": "state_dict"}),
    "mmengine_epoch_2.pth": ("mmengine", {"model": "ema_state_dict", "ema": "state_dict"}),
    "model1_averaged_ema.pt": ("averaged-model", {"ema": "module.*"}),
    "generic_train.pt": ("training-dict", {"model": "model_state_dict", "ema": "model_ema",
                                           "optimizer": "optimizer_state_dict"}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_layout_and_sections(name: str) -> None:
    ckpt = ckpttool.open(FIXTURES / name)
    layout, sources = EXPECTED[name]
    assert ckpt.layout == layout
    for kind, source in sources.items():
        assert ckpt.section(kind).source == source


def test_model_and_ema_keys_are_the_model_keys() -> None:
    for name in ("model1_averaged_ema.pt", "model1_train.pt", "mmengine_epoch_2.pth"):
        ckpt = ckpttool.open(FIXTURES / name)
        keys = list(ckpt.state_dict("ema"))
        assert keys and not any(k.startswith("module.") for k in keys), name


def test_missing_section_is_a_clear_error() -> None:
    ckpt = ckpttool.open(FIXTURES / "model1_state_dict.pt")
    with pytest.raises(ckpttool.CkptError, match="no ema section"):
        ckpt.section("ema")
