"""3D human pose forecasting and estimation from sequences, robust to missing frames."""
