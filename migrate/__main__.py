"""`python -m migrate`: the same as the `migrate` command."""

from migrate.cli.main import main

main()
