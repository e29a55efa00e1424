"""Floor 5: the `muxio` command. One module per subcommand; `main.py` lists them."""
