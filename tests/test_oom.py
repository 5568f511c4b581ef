"""The out-of-memory fallback of batched inference: halve, warn once, keep the smaller size."""

import pytest
import torch
from imagenet_fixtures import make_context
from torch.utils.data import TensorDataset

from robustbench_cgn import Classifier
from robustbench_cgn.errors import CGNBenchError
from robustbench_cgn.evaluation import predict_dataset
from robustbench_cgn.oom import ChunkedPredictor, is_out_of_memory


class _LimitedMemory:
    """A model that fails like a GPU allocator above ``limit`` images per call."""

    def __init__(self, limit, error=torch.OutOfMemoryError):
        self.limit, self.error, self.calls = limit, error, []

    def __call__(self, images):
        self.calls.append(images.shape[0])
        if images.shape[0] > self.limit:
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"": images.flatten(1).sum(1, keepdim=True), "x2": 2 * images[:, :1, 0, 0]}


@pytest.mark.parametrize("error", [torch.OutOfMemoryError, RuntimeError])
def test_an_oom_batch_is_split_in_halves_and_the_size_is_kept(error):
    model, warnings_seen = _LimitedMemory(20, error), []
    predict = ChunkedPredictor(model, torch.device("cpu"), warnings_seen.append)
    images = torch.randn(64, 3, 4, 4)
    out = predict(images)
    assert model.calls == [64, 32, 16, 16, 16, 16]  # 64 fails, 32 fails, 16 fits
    assert torch.allclose(
        out[""], model(images[:16])[""].new_tensor(0) + images.flatten(1).sum(1, keepdim=True)
    )
    assert torch.equal(out["x2"], 2 * images[:, :1, 0, 0])
    assert len(warnings_seen) == 2 and "retrying with batches of 16" in warnings_seen[-1]
    model.calls.clear()
    predict(torch.randn(40, 3, 4, 4))
    assert model.calls == [16, 16, 8]  # the reduced size is kept, no new failure


def test_other_errors_pass_through_and_one_image_too_many_is_a_clear_error():
    def broken(images):
        raise ValueError("not an OOM")

    with pytest.raises(ValueError):
        ChunkedPredictor(broken, torch.device("cpu"), print)(torch.zeros(4, 1))
    with pytest.raises(CGNBenchError, match="even with one image"):
        ChunkedPredictor(_LimitedMemory(0), torch.device("cpu"), lambda m: None)(torch.zeros(4, 1))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


class _Tiny(Classifier):
    name = "tiny"
    tasks = ("any",)

    def __init__(self, limit):
        self.model = _LimitedMemory(limit)

    def build(self, task, ctx):
        pass

    def fit(self, train_set, ctx):
        pass

    def prepare(self, images):
        return images

    def predict(self, images):
        return self.model(images)


def test_predict_dataset_survives_an_oom_with_the_same_predictions(tmp_path):
    images = torch.randn(50, 3, 4, 4)
    dataset = TensorDataset(images, torch.arange(50))
    ctx = make_context(tmp_path)
    with pytest.warns(RuntimeWarning, match="out of memory"):
        limited = predict_dataset(_Tiny(7), dataset, ctx, batch_size=25)
    free = predict_dataset(_Tiny(10**6), dataset, ctx, batch_size=25)
    assert torch.equal(limited.targets, free.targets)
    assert torch.allclose(limited.logits[""], free.logits[""], atol=1e-5)
