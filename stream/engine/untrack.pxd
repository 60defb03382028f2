# CPython's own way to take an object out of the cyclic garbage collector's lists (it does so for
# the tuples and dicts it finds hold only atomic values). The engine calls it on the small tuples
# its states keep (times, payments, heap entries): they hold only numbers and strings, so they can
# never be part of a cycle, and, born tracked, they and the tables holding them made up most of
# what every young collection walked (stream.runtime.garbage).
cdef extern from "Python.h":
    void PyObject_GC_UnTrack(object op)
