"""The start epoch of Lightning checkpoints, checked against a real Lightning resume.

Lightning saves ``epoch = trainer.current_epoch``; where training restarts depends on the loop
state (end-of-epoch vs mid-epoch save), so the real ``Trainer.fit(ckpt_path=...)`` is the oracle.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import torch

import ckpttool
from ckpttool.ops.resume import ResumeOptions, validate_resume

pl = pytest.importorskip("lightning.pytorch")


class _Lit(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 2)
        self.seen: list[tuple[int, int]] = []

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        self.seen.append((self.current_epoch, batch_idx))
        return self.net(batch[0]).pow(2).mean()

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)}


def _fit(root: Path, epochs: int, callbacks: list, ckpt_path: Path | None = None) -> _Lit:  # type: ignore[type-arg]
    from torch.utils.data import DataLoader, TensorDataset

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    data = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=2)  # 4 steps per epoch
    model = _Lit()
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(root), callbacks=callbacks,
                         enable_checkpointing=bool(callbacks))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, data, ckpt_path=str(ckpt_path) if ckpt_path else None)
    return model


@pytest.mark.parametrize("every_n_train_steps", [0, 6])
def test_start_epoch_matches_lightning(tmp_path: Path, every_n_train_steps: int) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    cb = ModelCheckpoint(dirpath=str(tmp_path), filename="ck", save_top_k=-1,
                         every_n_train_steps=every_n_train_steps or None,
                         every_n_epochs=None if every_n_train_steps else 1)
    _fit(tmp_path, 2, [cb])
    # one file, overwritten at each save: end-of-epoch -> saved after epoch 1; mid-epoch -> after global
    # step 6 (epoch 1, 2 of its 4 batches done)
    path = tmp_path / "ck.ckpt"
    result = validate_resume(ckpttool.open(path), ResumeOptions(epochs=4))
    resumed = _fit(tmp_path / "again", 4, [], ckpt_path=path)
    first_epoch, first_batch = resumed.seen[0]
    assert result.start_epoch == first_epoch
    if every_n_train_steps:
        assert first_batch > 0  # Lightning resumes inside the epoch
        assert "mid-epoch" in result.checks[0].message


class _LitOneCycle(_Lit):
    def __init__(self, total_steps: int) -> None:
        super().__init__()
        self.total_steps = total_steps

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=self.total_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def test_lightning_restores_onecycle_and_raises_where_predicted(tmp_path: Path) -> None:
    """Lightning loads the saved OneCycleLR state over the new one: the old total_steps wins."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader, TensorDataset

    data = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=2)  # 4 steps per epoch

    def fit(model: _Lit, epochs: int, callbacks: list, ckpt: Path | None = None) -> None:  # type: ignore[type-arg]
        trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                             enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                             callbacks=callbacks, enable_checkpointing=bool(callbacks))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(model, data, ckpt_path=str(ckpt) if ckpt else None)

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    fit(_LitOneCycle(total_steps=3 * 4), 2, [ModelCheckpoint(dirpath=str(tmp_path), filename="oc")])
    path = tmp_path / "oc.ckpt"
    result = validate_resume(ckpttool.open(path), ResumeOptions(epochs=5))
    resumed = _LitOneCycle(total_steps=5 * 4)  # the new settings, overridden by the restored state
    with pytest.raises(ValueError) as err:
        fit(resumed, 5, [], ckpt=path)
    check = next(c for c in result.checks if c.code == "resume.scheduler-overflow")
    assert check.status == "fail" and str(err.value) in check.message
    assert result.overflow is not None and str(err.value) == result.overflow["message"]
    # the batch during which it raised: the last one Lightning ran
    epoch, batch = resumed.seen[-1]
    assert (result.overflow["epoch"], result.overflow["batch"]) == (epoch, batch)
