"""Subcommands of the `foresplat` CLI: one module each, exposing `main(argv) -> int`."""
