"""``yolo_models.Model1``/``Model2`` as the YOLOv5-style fixtures pickle them."""

from fixtures.reference_models import Model1, Model2

__all__ = ["Model1", "Model2"]
