"""windowner: the classic window-based named-entity recognizer, with hand-written gradients."""

__version__ = "0.1.0"
