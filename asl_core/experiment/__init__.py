"""The comparison experiment: hyperparameter search on validation, paired runs over seeds, tables."""
