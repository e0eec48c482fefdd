"""Plain PyTorch forecasters and lifters (no Lightning): lift them into any code base."""
