"""A second implementation of confiance's wire format, written from docs/ alone."""
