"""``python -m llmledger``: the command line."""

from llmledger.cli import main

main()
