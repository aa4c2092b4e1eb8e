"""Benchmarks. Run each as a module from the repository root: ``python -m bench.<name>``
(the Makefile's ``bench-*`` targets do). Run as a path (``python bench/<name>.py``), Python
puts ``bench/`` first on the import path, where ``bench/queue.py`` would shadow the standard
library's ``queue`` module for everything the script imports (Celery, urllib3, logging).
"""
