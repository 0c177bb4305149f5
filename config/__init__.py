"""Non-secret defaults per environment; secrets come only from the environment."""
