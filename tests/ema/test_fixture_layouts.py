"""For every layout fixture: the extracted EMA is bit for bit what the library's own API gives.

Each oracle loads the fixture with torch (trusted files only; unimportable classes stood in for by
``tests.oracle``) and asks the real library for its EMA: ``AveragedModel.module.state_dict()``,
``EMA.ema_model.state_dict()`` (ema-pytorch), ``ExponentialMovingAverage.copy_to`` (torch-ema),
mmengine's ``EMAHook`` swap plus ``ExponentialMovingAverage.load_state_dict``, a LitEma's
``copy_to``... Then the written file must load strictly into the model it came from.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from fixtures.reference_models import BNModel, Model1, Model2
from tests.conftest import FIXTURES
from tests.ema.conftest import assert_bit_identical, load_output
from tests.oracle import torch_load


class Wrapped(nn.Module):
    """A LightningModule's (``model.``) or an mmengine BaseModel's (``net.``) view of a network."""

    def __init__(self, attr: str, net: nn.Module) -> None:
        super().__init__()
        self.add_module(attr, net)


def module_from_keys(sd: dict[str, torch.Tensor]) -> nn.Module:
    """A module tree with one parameter per key (for LitEma, which only needs the names)."""
    root = nn.Module()
    for key, value in sd.items():
        *path, leaf = key.split(".")
        mod = root
        for part in path:
            if not hasattr(mod, part):
                mod.add_module(part, nn.Module())
            mod = getattr(mod, part)
        mod.register_parameter(leaf, nn.Parameter(torch.zeros_like(value)))
    return root


class LitEma(nn.Module):
    """CompVis ``ldm/modules/ema.py`` LitEma: the buffers it registers and its ``copy_to``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.m_name2s_name: dict[str, str] = {}
        self.register_buffer("decay", torch.tensor(0.9999, dtype=torch.float32))
        self.register_buffer("num_updates", torch.tensor(0, dtype=torch.int))
        for name, p in model.named_parameters():
            if p.requires_grad:
                s_name = name.replace(".", "")
                self.m_name2s_name[name] = s_name
                self.register_buffer(s_name, p.clone().detach().data)

    def copy_to(self, model: nn.Module) -> None:
        m_param = dict(model.named_parameters())
        shadow_params = dict(self.named_buffers())
        for key in m_param:
            if m_param[key].requires_grad:
                m_param[key].data.copy_(shadow_params[self.m_name2s_name[key]].data)


def oracle_averaged(path: Path) -> tuple[dict[str, torch.Tensor], nn.Module]:
    from torch.optim.swa_utils import AveragedModel

    averaged = AveragedModel(Model1())
    averaged.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return averaged.module.state_dict(), Model1()


def oracle_yolo(model_cls: type[nn.Module]):
    def oracle(path: Path) -> tuple[dict[str, torch.Tensor], nn.Module]:
        return torch_load(path)["ema"].state_dict(), model_cls()
    return oracle


def oracle_ultralytics(path: Path) -> tuple[dict[str, torch.Tensor], nn.Module]:
    ema = torch_load(path)["ema"]  # model is None: the ModelEMA module is the weights
    return ema.state_dict(), ema


def oracle_timm(path: Path) -> tuple[dict[str, torch.Tensor], nn.Module]:
    return torch_load(path)["state_dict_ema"], BNModel()


def oracle_lightning_ema(path: Path) -> tuple[dict[str, torch.Tensor], nn.Module]:
    ck = torch_load(path)  # WeightAveraging.on_save_checkpoint put the average here
    assert "current_model_state" in ck
    return ck["state_dict"], Wrapped("model", BNModel())


def oracle_lightning_swa(path: Path) -> tuple[dict[str, torch.Tensor], nn.Module]:
    ck = torch_load(path)
    return ck["callbacks"]["StochasticWeightAveraging"]["average_model_state"], Wrapped("model", BNModel())


def oracle_mmengine(path: Path) -> tuple[dict[str, torch.Tensor], nn.Module]:
    pytest.importorskip("mmengine")
    from mmengine.hooks import EMAHook
    from mmengine.model import ExponentialMovingAverage

    ck = torch_load(path)
    EMAHook()._swap_ema_state_dict(ck)  # what EMAHook.after_load_checkpoint does on resume
    ema = ExponentialMovingAverage(Wrapped("net", BNModel()), momentum=0.0002)
    ema.load_state_dict(ck["ema_state_dict"])
    return ema.module.state_dict(), Wrapped("net", BNModel())


def oracle_ema_pytorch(path: Path) -> tuple[dict[str, torch.Tensor], nn.Module]:
    EMA = pytest.importorskip("ema_pytorch").EMA  # noqa: N806 - the library's class name

    ema = EMA(BNModel(), beta=0.995, update_after_step=0, update_every=1)
    ema.load_state_dict(torch_load(path)["ema"])
    return ema.ema_model.state_dict(), BNModel()


def oracle_torch_ema(path: Path) -> tuple[dict[str, torch.Tensor], nn.Module]:
    ExponentialMovingAverage = pytest.importorskip("torch_ema").ExponentialMovingAverage  # noqa: N806

    ck = torch_load(path)
    model = BNModel()
    model.load_state_dict(ck["model"])
    ema = ExponentialMovingAverage(model.parameters(), decay=0.995)
    ema.load_state_dict(ck["ema"])
    ema.copy_to(model.parameters())  # parameters from the EMA, buffers stay the model's
    return model.state_dict(), BNModel()


def oracle_litema(path: Path) -> tuple[dict[str, torch.Tensor], nn.Module]:
    sd = torch_load(path)["state_dict"]
    inner = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
    model = module_from_keys(inner)
    lit = LitEma(model)
    lit.load_state_dict({k[len("model_ema."):]: v for k, v in sd.items() if k.startswith("model_ema.")})
    lit.copy_to(model)
    ema_inner = model.state_dict()
    want = OrderedDict((k, ema_inner[k[len("model."):]] if k.startswith("model.") else v)
                       for k, v in sd.items() if not k.startswith("model_ema."))
    return want, module_from_keys(want)


def oracle_timm_real(path: Path) -> tuple[dict[str, torch.Tensor], nn.Module]:
    ck = torch_load(path)  # timm 1.0.29's own CheckpointSaver + ModelEmaV3, made on a GPU
    return ck["state_dict_ema"], module_from_keys(ck["state_dict"])


def oracle_generic(path: Path) -> tuple[dict[str, torch.Tensor], nn.Module]:
    return torch.load(path, map_location="cpu", weights_only=True)["model_ema"], BNModel()


ORACLES = {
    "model1_averaged_ema.pt": oracle_averaged,
    "model1_train.pt": oracle_yolo(Model1),
    "model2_train.pt": oracle_yolo(Model2),
    "ultralytics_last.pt": oracle_ultralytics,
    "timm_checkpoint.pth.tar": oracle_timm,
    "lightning_ema.ckpt": oracle_lightning_ema,
    "lightning_swa.ckpt": oracle_lightning_swa,
    "mmengine_epoch_2.pth": oracle_mmengine,
    "ema_pytorch.pt": oracle_ema_pytorch,
    "torch_ema.pt": oracle_torch_ema,
    "sd_ema.ckpt": oracle_litema,
    "generic_train.pt": oracle_generic,
    "gpu/timm_real/last.pth.tar": oracle_timm_real,
    "gpu/cuda_amp_train.pt": oracle_yolo(Model1),
}


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("name", sorted(ORACLES))
def test_extracted_ema_is_what_the_library_gives(name: str, suffix: str, tmp_path: Path, cli) -> None:
    if not (FIXTURES / name).exists():
        pytest.skip(f"{name} is made on a GPU machine and is not here")
    out = tmp_path / f"ema{suffix}"
    run = cli("extract-ema", FIXTURES / name, "-o", out, "--json")
    assert run.code == 0, run.err
    assert run.json["output"] == str(out) and run.json["sha256"]
    want, model = ORACLES[name](FIXTURES / name)
    got = load_output(out)
    assert_bit_identical(got, dict(want), ordered=suffix != ".safetensors")
    model.load_state_dict(got, strict=True)


def test_keys_are_the_model_keys_in_model_order(tmp_path: Path, cli) -> None:
    out = tmp_path / "ema.pt"
    assert cli("extract-ema", FIXTURES / "mmengine_epoch_2.pth", "-o", out).code == 0
    raw = torch_load(FIXTURES / "mmengine_epoch_2.pth")["ema_state_dict"]
    assert list(load_output(out)) == [k.removeprefix("module.") for k in raw if k != "steps"]
