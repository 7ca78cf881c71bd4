"""One module per CLI command: HELP, configure(parser), main(args) -> int."""
