"""Domain logic of the labelling app, as plain functions (views and tasks call these)."""
