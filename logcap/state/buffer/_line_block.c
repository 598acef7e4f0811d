/* The line block of a disk-buffer record body, compiled: what line_block.py's pack_python and
 * unpack_python do (line_block.py is the specification and the fallback).
 *
 * pack(head, lines): head, then the u32 little-endian length of each line in code points,
 *   then the lines concatenated in UTF-8 with "surrogatepass", as one bytes of the exact size.
 *   An ASCII line is copied as it is stored; any other is encoded by CPython's own encoder.
 * unpack(body, offset, count): the count lines whose lengths start at offset of body and whose
 *   text runs from there to the end of body. When the text is ASCII each str is made straight
 *   from its bytes; otherwise the text is decoded once ("surrogatepass") and sliced.
 * pair_sets(shapes, index, values): per line i, the names shapes[index[i]] (a tuple) zipped
 *   with the next len(shape) of values, as a tuple of (name, value) tuples: a record's
 *   per-line metadata (codec.py, version 3). The strings are shared, not copied.
 * split_pair_sets(sets, values): the inverse: appends every pair's value to values and returns
 *   (table, index), the distinct tuples of names in order of first use and each line's place in
 *   it. A line whose names are the very objects of the line before's (the usual case: names
 *   come from the pipeline's constants) reuses its place without making a tuple.
 * Errors are those of the specification: TypeError for a line that is not a str,
 * OverflowError for one of 2**32 code points or more, ValueError (UnicodeDecodeError among
 * them) for a block that does not decode.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static void put_u32(char *out, uint32_t value) {
    out[0] = (char)(value & 0xff);
    out[1] = (char)((value >> 8) & 0xff);
    out[2] = (char)((value >> 16) & 0xff);
    out[3] = (char)((value >> 24) & 0xff);
}

static uint32_t get_u32(const unsigned char *in) {
    return (uint32_t)in[0] | ((uint32_t)in[1] << 8) | ((uint32_t)in[2] << 16) |
           ((uint32_t)in[3] << 24);
}

static PyObject *pack(PyObject *self, PyObject *args) {
    Py_buffer head;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "y*O!:pack", &head, &PyList_Type, &list)) return NULL;
    /* A tuple holds the lines for us: nothing run while we work (a finalizer at a
     * collection) can change what the sizes were computed from. */
    PyObject *lines = PyList_AsTuple(list);
    PyObject **encoded = NULL; /* the UTF-8 of each non-ASCII line, NULL for ASCII ones */
    PyObject *result = NULL;
    if (lines == NULL) goto done;
    Py_ssize_t n = PyTuple_GET_SIZE(lines);
    if (n > (PY_SSIZE_T_MAX - head.len) / 4) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t size = head.len + 4 * n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line = PyTuple_GET_ITEM(lines, i);
        if (!PyUnicode_Check(line)) {
            PyErr_Format(PyExc_TypeError, "line %zd is %.100s, not str", i,
                         Py_TYPE(line)->tp_name);
            goto done;
        }
        if (PyUnicode_READY(line) < 0) goto done;
        Py_ssize_t length = PyUnicode_GET_LENGTH(line);
        if ((uint64_t)length > UINT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "a line of 2**32 code points or more");
            goto done;
        }
        Py_ssize_t bytes = length;
        if (!PyUnicode_IS_ASCII(line)) {
            if (encoded == NULL) {
                encoded = PyMem_Calloc((size_t)n, sizeof(PyObject *));
                if (encoded == NULL) {
                    PyErr_NoMemory();
                    goto done;
                }
            }
            encoded[i] = PyUnicode_AsEncodedString(line, "utf-8", "surrogatepass");
            if (encoded[i] == NULL) goto done;
            bytes = PyBytes_GET_SIZE(encoded[i]);
        }
        if (bytes > PY_SSIZE_T_MAX - size) {
            PyErr_NoMemory();
            goto done;
        }
        size += bytes;
    }
    result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL) goto done;
    char *out = PyBytes_AS_STRING(result);
    memcpy(out, head.buf, (size_t)head.len);
    char *lengths = out + head.len;
    char *text = lengths + 4 * n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line = PyTuple_GET_ITEM(lines, i);
        Py_ssize_t length = PyUnicode_GET_LENGTH(line);
        put_u32(lengths + 4 * i, (uint32_t)length);
        if (encoded != NULL && encoded[i] != NULL) {
            Py_ssize_t bytes = PyBytes_GET_SIZE(encoded[i]);
            memcpy(text, PyBytes_AS_STRING(encoded[i]), (size_t)bytes);
            text += bytes;
        } else {
            memcpy(text, PyUnicode_1BYTE_DATA(line), (size_t)length);
            text += length;
        }
    }
done:
    if (encoded != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(lines); i++) Py_XDECREF(encoded[i]);
        PyMem_Free(encoded);
    }
    Py_XDECREF(lines);
    PyBuffer_Release(&head);
    return result;
}

/* Whether the n bytes at text are all below 0x80 (32 bytes a step: four words or-ed). */
static int is_ascii(const unsigned char *text, Py_ssize_t n) {
    Py_ssize_t i = 0;
    uint64_t high = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t words[4];
        memcpy(words, text + i, 32);
        high |= (words[0] | words[1]) | (words[2] | words[3]);
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, text + i, 8);
        high |= word;
    }
    for (; i < n; i++) high |= text[i];
    return (high & UINT64_C(0x8080808080808080)) == 0;
}

static PyObject *unpack_ascii(const unsigned char *lengths, const unsigned char *text,
                              Py_ssize_t count) {
    PyObject *lines = PyList_New(count);
    if (lines == NULL) return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t length = (Py_ssize_t)get_u32(lengths + 4 * i);
        PyObject *line = PyUnicode_New(length, 127);
        if (line == NULL) {
            Py_DECREF(lines);
            return NULL;
        }
        memcpy(PyUnicode_1BYTE_DATA(line), text, (size_t)length);
        text += length;
        PyList_SET_ITEM(lines, i, line);
    }
    return lines;
}

static PyObject *unpack_decoded(const unsigned char *lengths, PyObject *text, Py_ssize_t count) {
    PyObject *lines = PyList_New(count);
    if (lines == NULL) return NULL;
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t end = start + (Py_ssize_t)get_u32(lengths + 4 * i);
        PyObject *line = PyUnicode_Substring(text, start, end);
        if (line == NULL) {
            Py_DECREF(lines);
            return NULL;
        }
        PyList_SET_ITEM(lines, i, line);
        start = end;
    }
    return lines;
}

static PyObject *unpack(PyObject *self, PyObject *args) {
    Py_buffer body;
    Py_ssize_t offset, count;
    if (!PyArg_ParseTuple(args, "y*nn:unpack", &body, &offset, &count)) return NULL;
    PyObject *result = NULL;
    if (offset < 0 || count < 0) {
        PyErr_SetString(PyExc_ValueError, "negative offset or count");
        goto done;
    }
    Py_ssize_t available = offset <= body.len ? body.len - offset : 0;
    if (count > available / 4) {
        PyErr_SetString(PyExc_ValueError, "body too short for its line lengths");
        goto done;
    }
    const unsigned char *lengths = (const unsigned char *)body.buf + offset;
    const unsigned char *text = lengths + 4 * count;
    Py_ssize_t text_bytes = available - 4 * count;
    uint64_t total = 0; /* below 2**32 * count: no overflow */
    for (Py_ssize_t i = 0; i < count; i++) total += get_u32(lengths + 4 * i);
    if (total == (uint64_t)text_bytes && is_ascii(text, text_bytes)) {
        result = unpack_ascii(lengths, text, count);
        goto done;
    }
    /* Not ASCII (or damaged): decode once, as the specification does, and slice. */
    PyObject *decoded = PyUnicode_DecodeUTF8((const char *)text, text_bytes, "surrogatepass");
    if (decoded == NULL) goto done;
    if ((uint64_t)PyUnicode_GET_LENGTH(decoded) != total) {
        PyErr_SetString(PyExc_ValueError, "line lengths do not match the text");
    } else {
        result = unpack_decoded(lengths, decoded, count);
    }
    Py_DECREF(decoded);
done:
    PyBuffer_Release(&body);
    return result;
}

static PyObject *pair_sets(PyObject *self, PyObject *args) {
    PyObject *shapes, *index, *values;
    if (!PyArg_ParseTuple(args, "O!O!O!:pair_sets", &PyList_Type, &shapes, &PyList_Type, &index,
                          &PyList_Type, &values))
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(index), tables = PyList_GET_SIZE(shapes);
    Py_ssize_t available = PyList_GET_SIZE(values), used = 0;
    PyObject *result = PyList_New(count);
    if (result == NULL) return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t at = PyLong_AsSsize_t(PyList_GET_ITEM(index, i));
        if (at == -1 && PyErr_Occurred()) goto fail;
        if (at < 0 || at >= tables) {
            PyErr_SetString(PyExc_ValueError, "an index out of the table");
            goto fail;
        }
        PyObject *names = PyList_GET_ITEM(shapes, at);
        if (!PyTuple_Check(names)) {
            PyErr_SetString(PyExc_TypeError, "a shape that is not a tuple");
            goto fail;
        }
        Py_ssize_t width = PyTuple_GET_SIZE(names);
        if (width > available - used) {
            PyErr_SetString(PyExc_ValueError, "per-line metadata do not match their values");
            goto fail;
        }
        PyObject *pairs = PyTuple_New(width);
        if (pairs == NULL) goto fail;
        PyList_SET_ITEM(result, i, pairs);
        for (Py_ssize_t j = 0; j < width; j++) {
            PyObject *pair = PyTuple_New(2);
            if (pair == NULL) goto fail;
            PyObject *name = PyTuple_GET_ITEM(names, j);
            PyObject *value = PyList_GET_ITEM(values, used + j);
            Py_INCREF(name);
            Py_INCREF(value);
            PyTuple_SET_ITEM(pair, 0, name);
            PyTuple_SET_ITEM(pair, 1, value);
            PyTuple_SET_ITEM(pairs, j, pair);
        }
        used += width;
    }
    if (used != available) {
        PyErr_SetString(PyExc_ValueError, "per-line metadata do not match their values");
        goto fail;
    }
    return result;
fail:
    Py_DECREF(result); /* items not yet set are NULL, which list dealloc skips */
    return NULL;
}

/* Whether the pairs' names are, one by one, the very objects of names (a tuple). */
static int same_names(PyObject *pairs, PyObject *names) {
    Py_ssize_t width = PyTuple_GET_SIZE(pairs);
    if (names == NULL || PyTuple_GET_SIZE(names) != width) return 0;
    for (Py_ssize_t j = 0; j < width; j++) {
        PyObject *pair = PyTuple_GET_ITEM(pairs, j);
        if (PyTuple_GET_ITEM(pair, 0) != PyTuple_GET_ITEM(names, j)) return 0;
    }
    return 1;
}

static PyObject *split_pair_sets(PyObject *self, PyObject *args) {
    PyObject *sets, *values;
    if (!PyArg_ParseTuple(args, "O!O!:split_pair_sets", &PyList_Type, &sets, &PyList_Type,
                          &values))
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(sets);
    PyObject *table = PyList_New(0), *places = PyDict_New(), *index = PyList_New(count);
    PyObject *last_names = NULL, *last_place = NULL; /* borrowed from table / places */
    if (table == NULL || places == NULL || index == NULL) goto fail;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pairs = PyList_GET_ITEM(sets, i);
        if (!PyTuple_Check(pairs)) {
            PyErr_SetString(PyExc_TypeError, "a line's metadata that is not a tuple");
            goto fail;
        }
        Py_ssize_t width = PyTuple_GET_SIZE(pairs);
        for (Py_ssize_t j = 0; j < width; j++) {
            PyObject *pair = PyTuple_GET_ITEM(pairs, j);
            if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
                PyErr_SetString(PyExc_TypeError, "a metadata pair that is not a 2-tuple");
                goto fail;
            }
            if (PyList_Append(values, PyTuple_GET_ITEM(pair, 1)) < 0) goto fail;
        }
        if (!same_names(pairs, last_names)) {
            PyObject *names = PyTuple_New(width);
            if (names == NULL) goto fail;
            for (Py_ssize_t j = 0; j < width; j++) {
                PyObject *name = PyTuple_GET_ITEM(PyTuple_GET_ITEM(pairs, j), 0);
                Py_INCREF(name);
                PyTuple_SET_ITEM(names, j, name);
            }
            PyObject *place = PyDict_GetItemWithError(places, names);
            if (place == NULL) {
                if (PyErr_Occurred()) {
                    Py_DECREF(names);
                    goto fail;
                }
                place = PyLong_FromSsize_t(PyList_GET_SIZE(table));
                if (place == NULL || PyDict_SetItem(places, names, place) < 0
                        || PyList_Append(table, names) < 0) {
                    Py_XDECREF(place);
                    Py_DECREF(names);
                    goto fail;
                }
                Py_DECREF(place); /* the dict holds it */
                place = PyDict_GetItem(places, names);
            }
            last_names = PyList_GET_ITEM(table, PyLong_AsSsize_t(place));
            last_place = place;
            Py_DECREF(names);
        }
        Py_INCREF(last_place);
        PyList_SET_ITEM(index, i, last_place);
    }
    Py_DECREF(places);
    PyObject *result = PyTuple_Pack(2, table, index);
    Py_DECREF(table);
    Py_DECREF(index);
    return result;
fail:
    Py_XDECREF(table);
    Py_XDECREF(places);
    Py_XDECREF(index);
    return NULL;
}

static PyMethodDef methods[] = {
    {"pack", pack, METH_VARARGS,
     "pack(head, lines) -> head + u32 code-point lengths + UTF-8 (surrogatepass) text."},
    {"unpack", unpack, METH_VARARGS,
     "unpack(body, offset, count) -> the count lines of the block at offset of body."},
    {"pair_sets", pair_sets, METH_VARARGS,
     "pair_sets(shapes, index, values) -> per line, shapes[index[i]] zipped with values."},
    {"split_pair_sets", split_pair_sets, METH_VARARGS,
     "split_pair_sets(sets, values) -> (table, index); every pair's value appended to values."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_line_block",
    "The line block of a disk-buffer record body (line_block.py is the specification).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__line_block(void) { return PyModule_Create(&module); }
