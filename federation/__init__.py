"""Dopamine on Flower 1.42: the app (server_app, client_app, strategy, task, config, node_state,
secagg, results, workflow) and, apart, its launch tooling (federation/launch/)."""
