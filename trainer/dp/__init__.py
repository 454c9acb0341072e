"""The differentially private step, in named stages (per-sample clipping, noise, server update).

Both the in-process simulator and the Flower apps call these same functions.
"""
