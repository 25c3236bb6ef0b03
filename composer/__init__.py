"""newsletter-composer: YAML issues -> responsive MJML email -> SMTP.

The public API is small; the command line (``newsletter``) is built on it.
"""

from composer.errors import ComposerError

__all__ = ["ComposerError", "__version__"]
__version__ = "0.1.0"
