"""What the collection's projects share: the CLI, logging, checkpoints, backbones and kernels."""
