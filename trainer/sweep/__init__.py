"""The evidence sweep: accuracy against ε for every mode, and against rounds T for Dopamine.

`plan` (which runs, with which settings), `execute` (run them, resumably), `report` (tables and
figures). The command is `python -m trainer sweep` (trainer/sweep_cli.py).
"""
