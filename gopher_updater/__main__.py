import sys

from gopher_updater.cli import main

sys.exit(main())
