"""Training rules (vanilla, metagrad, reptile, dense, unrolled): see base.py for the interface."""
