"""Empirical privacy audit in one training run (Steinke, Nasr, Jagielski 2023) with gradient canaries.

`canaries` (what the auditor inserts and how), `bounds` (guesses to a lower bound on ε),
`harness` (one audited run of a mode), `report` (table and membership-inference figure).
The command is `python -m trainer audit` (trainer/audit_cli.py).
"""
