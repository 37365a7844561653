"""Allow ``python -m amtcli`` and ``torchrun -m amtcli``."""

from amtcli.cli import main

if __name__ == "__main__":
    main()
