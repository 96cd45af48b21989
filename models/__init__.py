"""Model files: the shipped default, lookup, inspection and export."""
