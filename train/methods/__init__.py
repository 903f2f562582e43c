"""The training methods, one module each; ``make_method`` builds one by name.

A method says what the shared loop (``train.loop``) cannot know: its model, which loader mode and
augmentation it reads, its loss, what it does before the first step and between steps, and how
it is validated. See ``base.Method`` for the contract.
"""
from __future__ import annotations

import importlib

# name -> module defining ``METHOD`` (a ``base.Method`` subclass)
METHODS = {"siamese": "train.methods.siamese",
           "simclr": "train.methods.simclr",
           "byol": "train.methods.byol"}


def method_class(name: str):
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
    return importlib.import_module(METHODS[name]).METHOD


def make_method(config, info):
    """The method ``config.method`` names, for this run and rank."""
    return method_class(config.method)(config, info)
