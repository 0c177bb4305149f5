"""Development: embedded default, generated keys (with a loud warning), readable logs allowed."""
