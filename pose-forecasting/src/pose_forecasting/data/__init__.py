"""Human3.6M / AMASS loaders, the synthetic generator, cameras, windows and the datamodules."""
