"""Tools built on the public faces: the command line, the parity report, the loss plots."""
