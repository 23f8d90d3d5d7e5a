"""`python -m pensieve` runs the command-line interface."""

from pensieve.cli import main

raise SystemExit(main())
