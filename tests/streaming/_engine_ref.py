"""Kept for older imports: the one shared reference of the rules is tests/reference_rules.py."""

from reference_rules import reference_flags

__all__ = ["reference_flags"]
