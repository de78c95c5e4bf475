import sys

from affectflow.cli import main

sys.exit(main())
