"""Line output for test programs: one write per line, so lines from threads never interleave."""

import sys


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
