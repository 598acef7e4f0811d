/* The labels and structured_metadata stages' loops, compiled: what attach.py's _attach and
 * _attach_shared do (attach.py is the specification and the fallback).
 *
 * attach(fields, pairs, target, merge): for each i whose fields[i] is not None, the
 *   (name, value) of each (name, field) of pairs whose fields[i].get(field) is true, in the
 *   order of pairs; if any: target[i] = that tuple if target[i] is None, else
 *   merge(target[i], it, False).
 * attach_shared(fields, names, sources, target, cache, limit, merge): for each i whose
 *   fields[i] is not None, values = tuple(fields[i].get(s) for s in sources); found =
 *   cache[values], or else the sorted (name, value) pairs of the true values, stored in cache
 *   (cleared first when it holds limit); if found: target[i] = found if target[i] is None,
 *   else merge(target[i], found, True).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_store.h"

/* fields.get(key), a new reference (None when absent), or NULL with an exception. */
static PyObject *get(PyObject *fields, PyObject *key) {
    if (PyDict_CheckExact(fields)) {
        PyObject *value = PyDict_GetItemWithError(fields, key);
        if (value == NULL) {
            if (PyErr_Occurred()) return NULL;
            value = Py_None;
        }
        Py_INCREF(value);
        return value;
    }
    return PyObject_CallMethod(fields, "get", "O", key);
}

static int same_lengths(PyObject *fields, PyObject *target) {
    if (PyList_GET_SIZE(fields) != PyList_GET_SIZE(target)) {
        PyErr_SetString(PyExc_ValueError, "fields and target differ in length");
        return 0;
    }
    return 1;
}

static PyObject *attach(PyObject *self, PyObject *args) {
    PyObject *fields, *pairs, *target, *merge;
    if (!PyArg_ParseTuple(args, "O!O!O!O:attach", &PyList_Type, &fields, &PyTuple_Type, &pairs,
                          &PyList_Type, &target, &merge))
        return NULL;
    if (!same_lengths(fields, target)) return NULL;
    Py_ssize_t n_pairs = PyTuple_GET_SIZE(pairs);
    for (Py_ssize_t k = 0; k < n_pairs; k++) {
        PyObject *pair = PyTuple_GET_ITEM(pairs, k);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "pairs must be (name, field) tuples");
            return NULL;
        }
    }
    PyObject **found = PyMem_Malloc(sizeof(PyObject *) * (size_t)(n_pairs ? n_pairs : 1));
    if (found == NULL) return PyErr_NoMemory();
    Py_ssize_t n_found = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(fields); i++) {
        PyObject *line_fields = PyList_GET_ITEM(fields, i);
        if (line_fields == Py_None) continue;
        n_found = 0;
        for (Py_ssize_t k = 0; k < n_pairs; k++) {
            PyObject *pair = PyTuple_GET_ITEM(pairs, k);
            PyObject *value = get(line_fields, PyTuple_GET_ITEM(pair, 1));
            if (value == NULL) goto error;
            int truth = PyObject_IsTrue(value);
            PyObject *named = truth > 0 ? PyTuple_Pack(2, PyTuple_GET_ITEM(pair, 0), value)
                                        : NULL;
            Py_DECREF(value);
            if (truth < 0 || (truth > 0 && named == NULL)) goto error;
            if (named != NULL) found[n_found++] = named;
        }
        if (n_found == 0) continue;
        PyObject *tuple = PyTuple_New(n_found);
        if (tuple == NULL) goto error;
        for (Py_ssize_t k = 0; k < n_found; k++) PyTuple_SET_ITEM(tuple, k, found[k]);
        n_found = 0; /* the tuple holds them */
        int rc = store(target, i, tuple, merge, 0);
        Py_DECREF(tuple);
        if (rc < 0) goto error;
    }
    PyMem_Free(found);
    Py_RETURN_NONE;
error:
    while (n_found > 0) Py_DECREF(found[--n_found]);
    PyMem_Free(found);
    return NULL;
}

/* The sorted (name, value) pairs of the true values (a new tuple), or NULL. */
static PyObject *sorted_pairs(PyObject *names, PyObject *values) {
    PyObject *list = PyList_New(0);
    if (list == NULL) return NULL;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(values); k++) {
        PyObject *value = PyTuple_GET_ITEM(values, k);
        int truth = PyObject_IsTrue(value);
        if (truth < 0) goto error;
        if (!truth) continue;
        PyObject *pair = PyTuple_Pack(2, PyTuple_GET_ITEM(names, k), value);
        if (pair == NULL) goto error;
        int rc = PyList_Append(list, pair);
        Py_DECREF(pair);
        if (rc < 0) goto error;
    }
    if (PyList_Sort(list) < 0) goto error;
    PyObject *tuple = PyList_AsTuple(list);
    Py_DECREF(list);
    return tuple;
error:
    Py_DECREF(list);
    return NULL;
}

static PyObject *attach_shared(PyObject *self, PyObject *args) {
    PyObject *fields, *names, *sources, *target, *cache, *merge;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!nO:attach_shared", &PyList_Type, &fields,
                          &PyTuple_Type, &names, &PyTuple_Type, &sources, &PyList_Type, &target,
                          &PyDict_Type, &cache, &limit, &merge))
        return NULL;
    if (!same_lengths(fields, target)) return NULL;
    Py_ssize_t n_sources = PyTuple_GET_SIZE(sources);
    if (PyTuple_GET_SIZE(names) != n_sources) {
        PyErr_SetString(PyExc_ValueError, "names and sources differ in length");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(fields); i++) {
        PyObject *line_fields = PyList_GET_ITEM(fields, i);
        if (line_fields == Py_None) continue;
        PyObject *values = PyTuple_New(n_sources);
        if (values == NULL) return NULL;
        for (Py_ssize_t k = 0; k < n_sources; k++) {
            PyObject *value = get(line_fields, PyTuple_GET_ITEM(sources, k));
            if (value == NULL) {
                Py_DECREF(values);
                return NULL;
            }
            PyTuple_SET_ITEM(values, k, value);
        }
        PyObject *found = PyDict_GetItemWithError(cache, values); /* borrowed */
        if (found != NULL) {
            Py_INCREF(found);
        } else {
            if (PyErr_Occurred() || (found = sorted_pairs(names, values)) == NULL) {
                Py_DECREF(values);
                return NULL;
            }
            if (PyDict_GET_SIZE(cache) >= limit) PyDict_Clear(cache);
            if (PyDict_SetItem(cache, values, found) < 0) {
                Py_DECREF(values);
                Py_DECREF(found);
                return NULL;
            }
        }
        Py_DECREF(values);
        int rc = PyTuple_GET_SIZE(found) ? store(target, i, found, merge, 1) : 0;
        Py_DECREF(found);
        if (rc < 0) return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"attach", attach, METH_VARARGS,
     "attach(fields, pairs, target, merge): attach.py's _attach, compiled."},
    {"attach_shared", attach_shared, METH_VARARGS,
     "attach_shared(fields, names, sources, target, cache, limit, merge): attach.py's "
     "_attach_shared, compiled."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "logcap.pipeline.stages._attach",
    "The labels and structured_metadata stages' loops, compiled (attach.py is the "
    "specification).", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__attach(void) { return PyModule_Create(&module); }
