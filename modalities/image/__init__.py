"""Image modality: p x p pixel patches of pictures from folders, arrays or the embedded datasets."""

from .modality import ImageConfig, ImageModality, parse_image_size
from .tokenizer import ImagePatchTokenizer, patchify, unpatchify

__all__ = ["ImageModality", "ImageConfig", "ImagePatchTokenizer", "parse_image_size", "patchify",
           "unpatchify"]
