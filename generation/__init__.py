"""Generation library: backends, sampling, chat formatting. Knows nothing of Django."""
