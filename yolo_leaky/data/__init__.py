"""Layer 2, data: dataset resolution (COCO8, a YAML, the synthetic shapes), the shapes generator, the stand-in."""

from .datasets import dataset_info, file_digest, locate_data, resolve_data

__all__ = ["dataset_info", "file_digest", "locate_data", "resolve_data"]
