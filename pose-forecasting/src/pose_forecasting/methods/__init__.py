"""Lightning wrappers: losses, steps and metrics wiring."""
