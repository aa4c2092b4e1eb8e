"""Django glue of the learner: feature cache, training runs and registry, prediction."""
