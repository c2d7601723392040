"""`python -m pretrainlab ...`: the same CLI as the `pretrainlab` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
