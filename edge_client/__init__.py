"""On-device side of Dopamine (no torch): model sync, runtimes, preprocessing, diagnosis, history, head training."""
