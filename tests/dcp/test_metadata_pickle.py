"""``.metadata`` written without torch loads, with the full pickle, into the records torch would build."""

from __future__ import annotations

import pickle

import torch
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import (
    BytesStorageMetadata,
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    TensorProperties,
    TensorStorageMetadata,
)

from ckpttool.io.write.dcp_metadata import BytesRecord, TensorRecord, metadata_pickle


def test_the_pickle_loads_into_torchs_own_records() -> None:
    records = [
        TensorRecord("model.w", "bfloat16", (6, 4), [(((0, 0), (3, 4)), ("__0_0.distcp", 0, 900)),
                                                     (((3, 0), (3, 4)), ("__1_0.distcp", 70_000, 900))]),
        TensorRecord("model.scalar", "int64", (), [(((), ()), ("__0_0.distcp", 900, 800))]),
        BytesRecord("epoch", ("__0_0.distcp", 1700, 1261)),
    ]
    planner = {"model.w": ("model", "w"), "model.scalar": ("model", "scalar"), "epoch": ("epoch",)}
    got = pickle.loads(metadata_pickle(records, planner))
    size = torch.Size
    want = Metadata(
        state_dict_metadata={
            "model.w": TensorStorageMetadata(TensorProperties(dtype=torch.bfloat16), size([6, 4]), [
                ChunkStorageMetadata(size([0, 0]), size([3, 4])), ChunkStorageMetadata(size([3, 0]), size([3, 4]))]),
            "model.scalar": TensorStorageMetadata(TensorProperties(dtype=torch.int64), size([]),
                                                  [ChunkStorageMetadata(size([]), size([]))]),
            "epoch": BytesStorageMetadata()},
        planner_data=planner,
        storage_data={MetadataIndex("model.w", size([0, 0])): _StorageInfo("__0_0.distcp", 0, 900),
                      MetadataIndex("model.w", size([3, 0])): _StorageInfo("__1_0.distcp", 70_000, 900),
                      MetadataIndex("model.scalar", size([])): _StorageInfo("__0_0.distcp", 900, 800),
                      MetadataIndex("epoch"): _StorageInfo("__0_0.distcp", 1700, 1261)},
        version="1.0.0")
    assert got == want
    assert isinstance(got.state_dict_metadata["model.w"].size, torch.Size)
    assert got.state_dict_metadata["model.w"].properties.memory_format == torch.contiguous_format
    assert got.state_dict_metadata["model.w"].properties.layout == torch.strided
