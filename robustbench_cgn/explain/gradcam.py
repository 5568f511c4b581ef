"""GradCAM over many images in batches, with the library's hooks always released.

pytorch-grad-cam registers forward/backward hooks on the target layer when a CAM object is
built and removes them only in ``__exit__``/``__del__``; CAM objects built in a loop (as the
reproduction did, one per image) pile up hooks. Here one CAM object serves all batches inside
a ``with`` block.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor, nn


def batched_cams(
    model: nn.Module,
    target_layer: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
) -> Iterator[Tensor]:
    """For each ``(images [B, C, H, W], classes [B])`` batch, yield GradCAM maps ``[B, H, W]``
    in [0, 1]: the CAM of ``classes[i]`` for image ``i`` at ``target_layer``, min-max
    normalised per image and resized (bilinear) to the image size by the library.

    ``model`` must return logits (GradCAM of pre-softmax scores). Images go to the model's
    device; the model is put in eval mode (every submodule's mode is restored afterwards).
    """
    from pytorch_grad_cam import GradCAM  # lazy: it pulls in scikit-learn and OpenCV (~0.8 s)
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    device = next(model.parameters()).device
    modes = {module: module.training for module in model.modules()}
    try:
        with GradCAM(model=model, target_layers=[target_layer]) as cam:
            for images, classes in batches:
                targets = [ClassifierOutputTarget(int(c)) for c in classes]
                maps = cam(input_tensor=images.to(device), targets=targets)
                yield torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
    finally:
        for module, mode in modes.items():
            module.training = mode
