"""Plain PyTorch anomaly models (no Lightning): lift them into any code base."""
