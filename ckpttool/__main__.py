"""``python -m ckpttool``."""

from ckpttool.cli import main

raise SystemExit(main())
