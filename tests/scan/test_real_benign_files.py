"""Real checkpoints whose globals look alarming by module but cannot run code scan clean.

Each file is written by the real library in a child process (Lightning's Trainer with a Hydra-style
omegaconf config; torch.distributed's DTensor on a one-process gloo group), and the names the scan
must report are read from the file's own pickle with ``pickletools``, not from ckpttool.
"""

from __future__ import annotations

import _compat_pickle
import json
import pickletools
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from ckpttool.ops.scan import scan_file
from tests.conftest import ROOT, run_cli

# A user's structured config module, as Hydra projects keep them (importable when the file is loaded).
CONFIG_MODULE = textwrap.dedent('''
    import pathlib, typing
    from dataclasses import dataclass, field
    from lightning.pytorch.trainer.states import TrainerFn

    @dataclass
    class Optim:
        lr: float = 0.1
        betas: typing.List[float] = field(default_factory=lambda: [0.9, 0.99])

    @dataclass
    class Config:
        optim: Optim = field(default_factory=Optim)
        data_dir: pathlib.Path = pathlib.Path("/data/train")
        stage: TrainerFn = TrainerFn.FITTING
        layers: typing.List[int] = field(default_factory=lambda: [4, 2])
        extra: typing.Any = None
        run: typing.Dict[str, typing.Any] = field(default_factory=lambda: {"name": "demo"})
''')

LIGHTNING_HYDRA = textwrap.dedent('''
    import logging, sys
    sys.path.insert(0, sys.argv[2])
    import torch, lightning as L
    from omegaconf import OmegaConf
    from hydra_conf import Config

    logging.getLogger("lightning").setLevel(logging.ERROR)

    class Net(L.LightningModule):
        def __init__(self, cfg):
            super().__init__()
            self.save_hyperparameters(cfg)
            self.lin = torch.nn.Linear(4, 2)

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.mse_loss(self.lin(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.optim.lr)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randn(8, 2))
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", default_root_dir=sys.argv[2])
    trainer.fit(Net(OmegaConf.structured(Config)), torch.utils.data.DataLoader(data, batch_size=4))
    trainer.save_checkpoint(sys.argv[1])
''')

DTENSOR = textwrap.dedent('''
    import sys, torch, torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    mesh = init_device_mesh("cpu", (1,))
    mesh_2d = init_device_mesh("cpu", (1, 1), mesh_dim_names=("dp", "tp"))
    torch.manual_seed(0)
    sd = {"w": distribute_tensor(torch.randn(4, 4), mesh, [Shard(0)]),
          "b": distribute_tensor(torch.randn(4), mesh, [Replicate()]),
          "p": distribute_tensor(torch.randn(4), mesh_2d, [Replicate(), Shard(0)]),
          "q": DTensor.from_local(torch.randn(2), mesh, [Partial()])}
    torch.save(sd, sys.argv[1])
    dist.destroy_process_group()
''')

LOAD = textwrap.dedent('''
    import json, sys, torch
    sys.path[:0] = sys.argv[2:]
    obj = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
    hp = type(obj.get("hyper_parameters"))
    print(json.dumps({"keys": sorted(obj), "hparams_type": hp.__module__ + "." + hp.__name__}))
''')


def _child(script: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _py3_name(module: str, name: str) -> str:
    """The name pickle's own loader resolves a protocol-2 global to (``__builtin__.int`` is builtins.int)."""
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


def _pickled_globals(path: Path) -> set[str]:
    """Every global named by the archive's data.pkl, as pickletools decodes it."""
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    names: set[str] = set()
    strings: list[str] = []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            names.add(_py3_name(*arg.split(" ", 1)))
        elif op.name == "STACK_GLOBAL":
            names.add(f"{strings[-2]}.{strings[-1]}")
        if isinstance(arg, str):
            strings.append(arg)
    return names


@pytest.fixture(scope="module")
def hydra_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hydra")
    (folder / "hydra_conf.py").write_text(CONFIG_MODULE)
    path = folder / "last.ckpt"
    _child(LIGHTNING_HYDRA, path, folder)
    return path


def test_lightning_hydra_checkpoint_is_a_real_one(hydra_ckpt: Path) -> None:
    loaded = json.loads(_child(LOAD, hydra_ckpt, hydra_ckpt.parent).stdout)
    assert loaded["hparams_type"] == "omegaconf.dictconfig.DictConfig"
    assert {"state_dict", "optimizer_states", "hyper_parameters"} <= set(loaded["keys"])
    names = _pickled_globals(hydra_ckpt)
    assert {"typing.Any", "omegaconf.dictconfig.DictConfig", "omegaconf.nodes.PathNode",
            "omegaconf.nodes.EnumNode", "lightning.pytorch.trainer.states.TrainerFn"} <= names
    assert {"pathlib.PosixPath", "pathlib.Path"} & names and {"typing.List"} & names


def test_lightning_hydra_checkpoint_scans_clean(hydra_ckpt: Path) -> None:
    result = scan_file(hydra_ckpt)
    assert result.status == "clean", [f.to_dict() for f in result.findings]
    kinds = {g.name: g.kind for g in result.globals}
    assert set(kinds) == _pickled_globals(hydra_ckpt)
    assert kinds["hydra_conf.Config"] == "stub"
    assert kinds["typing.Any"] == "data" and kinds["typing.List"] == "data"
    assert kinds["omegaconf.dictconfig.DictConfig"] == "stub"
    assert kinds["lightning.pytorch.trainer.states.TrainerFn"] == "stub"
    proc = run_cli("scan", hydra_ckpt, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    assert [f["status"] for f in json.loads(proc.stdout)["files"]] == ["clean"]


def test_dtensor_checkpoint_scans_clean(tmp_path: Path) -> None:
    path = tmp_path / "dtensor.pt"
    _child(DTENSOR, path)
    names = _pickled_globals(path)
    assert {"torch.distributed.tensor.DTensor", "torch.distributed.device_mesh.DeviceMesh",
            "torch.distributed.tensor.placement_types.Shard", "torch.distributed.tensor.placement_types.Replicate",
            "torch.distributed.tensor.placement_types.Partial"} <= names
    result = scan_file(path)
    assert result.status == "clean", result.dangerous
    kinds = {g.name: g.kind for g in result.globals}
    assert set(kinds) == names
    assert all(kinds[n] in ("stub", "data") for n in names if n.startswith("torch.distributed."))
