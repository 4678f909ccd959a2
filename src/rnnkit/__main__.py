import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: the same line and code as later
    sys.stderr.write("error: interrupted\n")
    sys.exit(130)

sys.exit(main())
