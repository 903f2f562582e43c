"""What a training method supplies to the shared loop (``train.loop``).

The loop owns everything methods share: the loader, LARS and its schedule, sub-batches
(gradient accumulation), DDP, bf16, checkpoints and resume, the metrics log and the choice of
``best.pt``. One optimiser step is

    chunks = method.prepare(run, batch)          # device tensors, split into sub-batches
    for chunk in chunks: loss, parts = method.loss(run, chunk); loss.backward()
    optimisers step; schedulers step
    method.after_update(run, step)               # e.g. BYOL's target network update

A method's ``loss`` of each sub-batch is already scaled so that the sub-batches add up to the
whole step's loss. Extra state (the Siamese mixtures, ...) goes into the checkpoint through
``state_dict``/``load_state_dict``, as top-level keys.
"""
from __future__ import annotations

from torch import nn


class Method:
    name = ""
    mode = "pairs"              # the loaders' mode the training reads
    best_metric = "val_loss"    # key of ``validate``'s figures that chooses best.pt
    higher_is_better = False
    default_base_lr = 0.3       # learning rate per 256 samples when the config gives none
    # TrainConfig fields only this method reads (the command line of other methods hides them)
    own_fields: tuple = ()

    def __init__(self, config, info):
        self.config, self.info = config, info

    # --- model ---
    def make_model(self) -> nn.Module:
        raise NotImplementedError

    def optimised(self, model: nn.Module) -> list[nn.Module]:
        """The modules that get one LARS optimiser each."""
        return [model]

    def train_augment(self):
        """The training loader's augmentation: one ``AugmentSpec`` or one per view."""
        raise NotImplementedError

    # --- the loop's hooks ---
    def start(self, run) -> list[dict]:
        """Before step 0 of a fresh run (not on resume); returns rows for the metrics log."""
        return []

    def prepare(self, run, batch: dict) -> tuple[list[dict], dict]:
        """The step's sub-batches (``config.sub_batches`` of them) and figures to log."""
        raise NotImplementedError

    def loss(self, run, chunk: dict):
        """``(loss, parts)``: the sub-batch's scaled loss and detached tensors to sum."""
        raise NotImplementedError

    def after_update(self, run, step: int) -> dict:
        """After the optimisers' step number ``step`` (1-based); returns figures to log."""
        return {}

    def after_step(self, run, step: int) -> list[dict]:
        """After the step is logged; returns rows for the metrics log."""
        return []

    def end_of_epoch(self, run, step: int, epoch: int) -> list[dict]:
        """After each epoch (``epoch``: epochs completed; before validation); returns rows for
        the metrics log."""
        return []

    def validation_loader(self, run):
        """The loader ``validate`` reads (rank 0, the whole ``val_split``), or None."""
        return None

    def validate(self, run, loader) -> dict:
        raise NotImplementedError

    # --- state ---
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def result(self) -> dict:
        """What ``loop.train`` hands back beside the step counts (e.g. the mixtures)."""
        return {}

    def close(self) -> None:
        """Close loaders the method opened."""
