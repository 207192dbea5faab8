"""ultralytics' model class, as the fixtures pickle it."""

from torch import nn


class DetectionModel(nn.Module):
    pass
