"""Privacy accounting: ε of the sampled Gaussian mechanism composed over rounds (RDP and PRV)."""
from trainer.privacy.accounting import (ACCOUNTANTS, PrivacyLedger, calibrate_noise_multiplier,
                                        compute_epsilon, round_up)

__all__ = ["ACCOUNTANTS", "PrivacyLedger", "calibrate_noise_multiplier", "compute_epsilon", "round_up"]
