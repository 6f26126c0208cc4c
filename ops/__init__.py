"""Operations: settings, the `asterbill` command line, process start-up and tools.

`ops.settings` is the only module that reads the environment (and `.env`). `ops.cli` is the
`asterbill` entry point; it only parses arguments and calls services of the other packages.
ops may import every other package; no other package imports `ops.cli`.
"""
