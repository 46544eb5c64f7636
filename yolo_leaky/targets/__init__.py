"""Layer 3, deployment targets: the sourced table of what each target runs, and (as they land) one back end per
target."""

from .table import TARGETS, check_target, get_target

__all__ = ["TARGETS", "check_target", "get_target"]
