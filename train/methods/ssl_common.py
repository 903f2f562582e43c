"""What the two SSL baselines share (``SSLMethod``): the ssl-mode batch on the device and split
into sub-batches, and the validation loss that chooses their ``best.pt`` (as the paper kept the
model with the lowest validation loss).

The validation loader reads the whole ``val_split`` on rank 0 with the training augmentation and
a fixed seed (``set_epoch(0)`` before each pass), so every validation sees the same views and
the losses of two epochs compare the model, not the draws.
"""
from __future__ import annotations

import torch

from train.methods.base import Method


class SSLMethod(Method):
    """A method that reads two views of every patch (the loaders' ``ssl`` mode) and keeps the
    checkpoint of lowest validation loss; subclasses give the model, augmentation and loss
    (``batch_loss(model, view1, view2, weight, info)``: a batch's mean loss)."""

    mode = "ssl"
    best_metric = "val_loss"
    higher_is_better = False

    def batch_loss(self, model, view1, view2, weight, info) -> torch.Tensor:
        raise NotImplementedError

    def prepare(self, run, batch: dict):
        chunks, real = view_chunks(run, batch)
        return chunks, {"pairs": real}

    def loss(self, run, chunk: dict):
        info = self.info if self.info.active else None
        with run.autocast():
            loss = self.batch_loss(run.forward, chunk["view1"], chunk["view2"], chunk["weight"],
                                   info)
        return loss * chunk["share"], {}

    def validation_loader(self, run):
        return run.make_loader(self.config.val_split, mode="ssl", augment=self.train_augment(),
                               world=False)

    def validate(self, run, loader) -> dict:
        """Rank 0 alone: no gathering from other ranks."""
        return validation_loss(run, loader,
                               lambda a, b, w: self.batch_loss(run.model, a, b, w, None))


def view_chunks(run, batch: dict) -> tuple[list[dict], torch.Tensor]:
    """The step's sub-batches ``{"view1", "view2", "weight", "share"}`` and its real count.
    ``share``: the sub-batch's fraction of the step's real samples, so the sub-batches' mean
    losses times their shares add up to the step's mean."""
    v1, v2 = run.to_device(batch["view1"]), run.to_device(batch["view2"])
    weight = (~batch["is_pad"]).to(run.info.device, torch.float32)
    real = weight.sum().clamp_min(1.0)
    parts = run.config.sub_batches
    chunks = [{"view1": a, "view2": b, "weight": w, "share": w.sum() / real}
              for a, b, w in zip(v1.chunk(parts), v2.chunk(parts), weight.chunk(parts))]
    return chunks, real


@torch.no_grad()
def validation_loss(run, loader, batch_loss) -> dict:
    """The mean over the split's real samples of ``batch_loss(view1, view2, weight)`` (a
    batch's mean loss), in eval mode; the model's mode is put back afterwards."""
    model = run.model
    was_training = model.training
    model.eval()
    total, count = 0.0, 0.0
    try:
        loader.set_epoch(0)
        for batch in loader:
            v1, v2 = run.to_device(batch["view1"]), run.to_device(batch["view2"])
            weight = (~batch["is_pad"]).to(run.info.device, torch.float32)
            n = float(weight.sum())
            if n == 0:
                continue
            with run.autocast():
                loss = batch_loss(v1, v2, weight)
            total += float(loss) * n
            count += n
            if run.config.val_max_pairs and count >= run.config.val_max_pairs:
                break
    finally:
        model.train(was_training)
    return {"val_loss": total / count if count else None, "n_samples": int(count)}
