import sys

from collab_cli.main import main

sys.exit(main())
