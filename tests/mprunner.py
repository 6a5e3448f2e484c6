# Runs test functions of one device-zone test module under MicroPython.
#   micropython mprunner.py <module> <test name>...
# Prints a marker line per test and the MicroPython traceback on failure;
# tests/conftest.py parses this output into pytest items.

import sys

_MARK = "@@edgestream-test@@"


def main():
    modname = sys.argv[1]
    names = sys.argv[2:]
    mod = __import__(modname)
    for name in names:
        fn = getattr(mod, name)
        print(_MARK, "BEGIN", name)
        try:
            fn()
        except BaseException as e:  # report every failure
            print(_MARK, "FAIL", name)
            sys.print_exception(e)
            if isinstance(e, KeyboardInterrupt):
                raise
        else:
            print(_MARK, "PASS", name)


main()
