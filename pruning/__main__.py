import sys

from .threads import prepare

try:  # before anything imports torch: libgomp reads its wait settings once, when it loads
    prepare()
except Exception:  # a bad PRUNESCOPE_THREADS: main() says so in one error line
    pass

from .cli import main  # noqa: E402

sys.exit(main())
