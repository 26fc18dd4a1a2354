"""Integration tests: real programs, real root file systems, real runtimes."""
