"""Dopamine on Flower: the ServerApp/ClientApp (SecAgg+), the hospital's guards, the SecAgg+
encoding, and a launcher for a local deployment (`python -m federation --help`)."""
