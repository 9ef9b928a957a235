"""One module per scenario of issue 7; each returns rows for bench/results.md."""
