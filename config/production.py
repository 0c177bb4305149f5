"""Production: every secret must come from the environment; no generated defaults."""

DEBUG = False
