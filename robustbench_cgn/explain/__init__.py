"""Explainability tools shared by benchmarks: batched GradCAM and mask IoU."""

from .gradcam import batched_cams
from .iou import MaskIoU, mask_iou

__all__ = ["MaskIoU", "batched_cams", "mask_iou"]
