/* How the attaching stages store a line's pairs (attach.py), shared by _attach.c and the
 * fused step of _opensips.c. Included after Python.h. */
#ifndef LOGCAP_STORE_H
#define LOGCAP_STORE_H

/* target[i] = found, or merge(target[i], found, sort) if target[i] is not None; -1 with an
 * exception. */
static int store(PyObject *target, Py_ssize_t i, PyObject *found, PyObject *merge, int sort) {
    PyObject *current = PyList_GET_ITEM(target, i), *value;
    if (current == Py_None) {
        Py_INCREF(found);
        value = found;
    } else {
        value = PyObject_CallFunctionObjArgs(merge, current, found, sort ? Py_True : Py_False,
                                             NULL);
        if (value == NULL) return -1;
    }
    return PyList_SetItem(target, i, value); /* steals value, drops the old one */
}

#endif
