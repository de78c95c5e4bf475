"""The affectflow command line: the top layer, above flows/ and pipeline/."""
