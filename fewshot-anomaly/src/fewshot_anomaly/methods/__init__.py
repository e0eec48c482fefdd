"""Lightning modules: the thin layer that fits, evaluates and predicts with models/."""
