"""Central side of Dopamine: data, model, the five training modes, privacy accounting, reports."""
