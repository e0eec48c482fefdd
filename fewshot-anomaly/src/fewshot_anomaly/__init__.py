"""Industrial anomaly detection and localisation from few normal images."""
