"""What the command line runs, one module per command that needs more than a few lines."""
