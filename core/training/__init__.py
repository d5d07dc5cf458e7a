"""Training one trial: the loop, the Optuna objective and the trial-cost probe."""
