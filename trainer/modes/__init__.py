"""The five training modes of the paper. Each runs one round at a time on simulated hospitals."""
from trainer.modes.base import Mode
from trainer.modes.central import CentralMode
from trainer.modes.dp_sgd import DopamineMode
from trainer.modes.fedavg import FedAvgMode, ParallelDPMode


def make_mode(name: str, **kwargs) -> Mode:
    """The mode object for `name` (central, central-dp, fedavg, fl-parallel-dp, dopamine)."""
    classes = {"central": CentralMode, "central-dp": DopamineMode, "dopamine": DopamineMode,
               "fedavg": FedAvgMode, "fl-parallel-dp": ParallelDPMode}
    if name not in classes:
        raise ValueError(f"mode must be one of {sorted(classes)}, got {name!r}")
    return classes[name](**kwargs)


__all__ = ["Mode", "make_mode"]
