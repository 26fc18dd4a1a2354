"""Prove that a seccomp program means a profile (issue 9): a room of its own beside the pipeline.

regions: symbolic evaluation of a program over all of seccomp_data;
meaning: what a profile means, written out from semantics.md;
check: the comparison, with a witness for every difference;
run: the checks `ocishim verify` makes on a profile.
"""
