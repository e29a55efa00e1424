"""`python -m muxio ...` is the same as the `muxio` command."""

from muxio.cli.main import main

raise SystemExit(main())
