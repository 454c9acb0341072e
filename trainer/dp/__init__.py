"""The differentially private core. Start with `dopamine.py`: one round, whole.

  noise.py              where DP randomness comes from (OS CSPRNG; seeds only in tests)
  hospital.py           a hospital's data and its Poisson sample
  per_sample.py         Σ clip(g_i, C) by one of several per-sample methods
  dopamine.py           a hospital's share, the server's step, one round
  server_optimizers.py  SGD with momentum / Adam on the privatised sum
  local.py              local (DP-)SGD for the fedavg and fl-parallel-dp baselines
"""
