"""`python -m migrate`: the same as the `migrate` command."""

from migrate.cli.entry import main

main()
