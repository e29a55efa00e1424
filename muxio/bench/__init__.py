"""Floor 5: `muxio bench`. Servers under test in their own processes, load generators in
others (pinned to other CPUs when possible), interleaved rounds, ratios to a reference
peer measured in the same run; tables, JSON and plots."""
