"""Test helpers that third-party plugin authors may import; a stable, documented surface."""
