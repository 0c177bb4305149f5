"""Testing: same code paths as production, cheaper password hashing, quiet logs."""

TESTING = True
LOG_LEVEL = "WARNING"
# argon2id parameters cheap enough for thousands of test logins (production keeps the defaults).
PASSWORD_HASH_TIME_COST = 1
PASSWORD_HASH_MEMORY_COST = 1024
