"""Decision thresholds per embedding model (JSON files from ``eval lfw --write-calibration``)."""
