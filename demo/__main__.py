"""`python -m polymm.demo` (what `make demo` runs)."""
import sys

from polymm.demo import main

sys.exit(main())
