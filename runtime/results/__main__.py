"""``python -m runtime.results {export,report,reconcile,notify}``: the results task's one entry point."""

from runtime.results.cli import main

raise SystemExit(main())
