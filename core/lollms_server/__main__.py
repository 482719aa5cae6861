"""`python -m lollms_server ...`: the `lollms-server` command."""

from .cli import main

raise SystemExit(main())
