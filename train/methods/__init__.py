"""Training methods, one file each: the networks, the loss step and the evaluation pass."""
