"""``python -m kalla``: the ``kalla`` command."""

from kalla.cli import main

if __name__ == "__main__":
    main()
