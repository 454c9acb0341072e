"""Launch tooling, apart from the Flower app itself (federation/*.py): a local deployment of
SuperLink + SuperNodes (deploy, deploy_cli, procs), Flower's simulation engine (simulate), per-hospital
data folders (split_data), and the opt-in fast path (polling patches, doorbell, warm worker).
Nothing here runs inside a round; a hospital's IT may use its own launcher instead."""
