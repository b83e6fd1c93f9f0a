"""The image errors: every one carries a one-line message for the user."""


class ImageError(LookupError):
    """Unknown image, or an image that cannot be imported, used or removed (one-line message)."""


class ImageInUseError(ImageError):
    """The image is used by containers (remove them first, or force)."""


class ImageFormatError(ImageError):
    """The input is not a readable image, or fails verification (one-line message)."""
