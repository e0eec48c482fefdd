"""Dataset layouts (MVTec AD, MVTec LOCO, VisA), the synthetic generator, the datamodule."""
