"""Privacy accounting: ε of the sampled Gaussian mechanism composed over rounds (RDP and PRV)."""
from edge_client.privacy_figures import round_up
from trainer.privacy.accounting import (ACCOUNTANTS, PrivacyLedger, calibrate_noise_multiplier,
                                        compute_epsilon, resolve_noise_multiplier)

__all__ = ["ACCOUNTANTS", "PrivacyLedger", "calibrate_noise_multiplier", "compute_epsilon",
           "resolve_noise_multiplier", "round_up"]
