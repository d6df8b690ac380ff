import sys

from segscale_cli.main import main

sys.exit(main())
