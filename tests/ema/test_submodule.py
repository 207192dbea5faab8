"""An EMA kept inside the saved module (``self.ema = EMA(self.model)``), found and mapped onto ``model.*``."""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: N812 - the torch convention

from fixtures.reference_models import BNModel
from tests.ema.conftest import assert_bit_identical, load_output


def _data(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def _expected(full: dict[str, torch.Tensor], ema_prefix: str, ema_inner: dict[str, torch.Tensor]
              ) -> dict[str, torch.Tensor]:
    """The module's keys without the EMA submodule, ``model.*`` taken from the EMA."""
    return {k: ema_inner[k[len("model."):]] if k.startswith("model.") else v
            for k, v in full.items() if not k.startswith(ema_prefix)}


def test_lightning_module_holding_an_ema_pytorch_ema(tmp_path: Path, cli) -> None:
    pl = pytest.importorskip("lightning.pytorch")
    EMA = pytest.importorskip("ema_pytorch").EMA  # noqa: N806 - the library's class name
    from torch.utils.data import DataLoader, TensorDataset

    class Lit(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = BNModel()
            self.ema = EMA(self.model, beta=0.9, update_after_step=0, update_every=1, include_online_model=False)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.model(x), y)

        def on_train_batch_end(self, *args) -> None:
            self.ema.update()

        def configure_optimizers(self):
            return torch.optim.SGD(self.model.parameters(), lr=0.1)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.manual_seed(0)
    lit = Lit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                             enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(tmp_path))
        trainer.fit(lit, DataLoader(TensorDataset(*_data()), batch_size=4))
        trainer.save_checkpoint(tmp_path / "last.ckpt")
    run = cli("extract-ema", tmp_path / "last.ckpt", "-o", tmp_path / "ema.pt", "--json")
    assert run.code == 0, run.err
    assert run.json["layout"] == "ema-pytorch" and run.json["source"] == "state_dict.ema.ema_model.*"
    assert run.json["updates"] == 2 and run.json["updates_key"] == "ema.step"
    got = load_output(tmp_path / "ema.pt")
    assert_bit_identical(got, _expected(lit.state_dict(), "ema.", lit.ema.ema_model.state_dict()))
    BNModel().load_state_dict({k.removeprefix("model."): v for k, v in got.items()}, strict=True)
    # published: the EMA becomes the model weights, the module's own EMA keys stay (strict load works)
    assert cli("extract-ema", tmp_path / "last.ckpt", "-o", tmp_path / "pub.ckpt", "--into-checkpoint").code == 0
    published = torch.load(tmp_path / "pub.ckpt", weights_only=True)["state_dict"]
    Lit().load_state_dict(published, strict=True)
    assert all(torch.equal(published[k], v) for k, v in got.items())


class Holder(nn.Module):
    """A training module that owns its model and an EMA of it under ``attr``."""

    def __init__(self, attr: str, ema: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.add_module(attr, ema)


def test_averaged_model_submodule(tmp_path: Path, cli) -> None:
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(1)
    model = BNModel()
    holder = Holder("model_ema", AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True),
                    model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _data(seed=1)
    for _ in range(3):
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        holder.model_ema.update_parameters(model)
    torch.save({"state_dict": holder.state_dict(), "epoch": 0}, tmp_path / "ck.pt")
    run = cli("extract-ema", tmp_path / "ck.pt", "-o", tmp_path / "ema.safetensors", "--json")
    assert run.code == 0, run.err
    assert run.json["layout"] == "averaged-model" and run.json["updates"] == 3
    want = _expected(holder.state_dict(), "model_ema.", holder.model_ema.module.state_dict())
    assert_bit_identical(load_output(tmp_path / "ema.safetensors"), want, ordered=False)


def test_deep_copy_submodule_in_a_bare_state_dict(tmp_path: Path, cli) -> None:
    torch.manual_seed(2)
    model = BNModel()
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in ema.parameters():
            p.mul_(0.5)
    holder = Holder("ema_model", ema, model)
    torch.save(holder.state_dict(), tmp_path / "sd.pt")
    listing = cli("extract-ema", tmp_path / "sd.pt", "--list", "--json")
    assert [c["source"] for c in listing.json["candidates"]] == ["ema_model.*"]
    run = cli("extract-ema", tmp_path / "sd.pt", "-o", tmp_path / "ema.pt", "--json")
    assert run.code == 0, run.err
    assert_bit_identical(load_output(tmp_path / "ema.pt"), _expected(holder.state_dict(), "ema_model.",
                                                                      ema.state_dict()))


def test_a_submodule_named_like_ema_that_mirrors_nothing_is_no_ema(tmp_path: Path, cli) -> None:
    holder = Holder("ema_head", nn.Linear(3, 2), BNModel())
    torch.save(holder.state_dict(), tmp_path / "sd.pt")
    run = cli("extract-ema", tmp_path / "sd.pt", "--list")
    assert run.code == 2 and "section-not-found" in run.err
