"""The model and dataset registries: what a name given to --model or --dataset means.

Second floor, above the settings types: `models` maps a model name to its class (built-in,
installed plugin, or `module:Class`) without importing it until it is used; `datasets` lists the
named datasets and tells a user's own file from a name. MLflow's Model Registry (registered
versions, the champion alias) is another thing, in xlrec.platform.registry.
"""
