"""vidseg: segment real videos by class name with no training, from CogVideoX's own attention (IMAP / GramCol)."""

__version__ = "0.1.0"
