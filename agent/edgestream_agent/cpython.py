# What MicroPython has built in, for the same modules under CPython (the
# host tools and the tests): const() and the code emitter decorators.
#
#   try:
#       import micropython
#       from micropython import const
#   except ImportError:  # CPython
#       from edgestream_agent.cpython import const, micropython
#
# MicroPython's compiler reads @micropython.native as a directive and never
# imports this module; CPython evaluates the decorator, which here returns
# the function as it is.


def const(x):
    return x


class micropython:  # stands in for the module of that name
    @staticmethod
    def native(f):
        return f
