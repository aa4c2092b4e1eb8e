"""The ML engineer's workspace pages: overview, imports, training and models, ranking, settings
(issue 11). Pages only: the figures come from labelling's and learner's services."""
