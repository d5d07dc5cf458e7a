"""What is searched: study specs, the hyperparameter catalogue, samplers, pruners, presets."""
