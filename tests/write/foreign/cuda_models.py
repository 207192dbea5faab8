"""``cuda_models.Model1`` as the CUDA YOLOv5-style fixture pickles it."""

from fixtures.reference_models import Model1, Model2

__all__ = ["Model1", "Model2"]
