"""Hyperparameter search on Optuna: the search space, the trial objective, the pruning budget, the study files."""
