/* The line automaton of a multiline rule, run over a read's lines: what line_automaton.py's
 * stops() does by searching each line (that is the specification and the fallback).
 *
 * stops(packed, lines, on_match, first, search) -> list[int]: first + i for each lines[i]
 *   (a str) in which the pattern finds a match (on_match true) or finds none (on_match
 *   false), ascending. ``packed`` is a LinesAutomaton's (line_automaton.py): 8 header words
 *   (states, flags, nullable, first states, last states, 3 unused), a follow mask per state,
 *   a state mask per ASCII character. A line the automaton cannot decide (it reaches a
 *   character past ASCII; with '$', the line ends in '\n') is decided by search(line) is not
 *   None.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_STATES 64
#define ASCII 128
#define HEADER 8
#define ANCHORED 1
#define END 2
#define END_STRING 4

typedef struct {
    uint64_t states, flags, nullable, first, last;
    uint64_t follow[MAX_STATES];
    uint64_t by_char[ASCII];
} automaton;

/* One character of a line: the automaton's step (a return from decide() when it is decided
 * or undecided here). */
#define STEP(c)                                                                 \
    do {                                                                        \
        uint64_t next = 0, rest = active;                                       \
        if ((c) >= ASCII) return -1;                                            \
        while (rest) {                                                          \
            next |= a->follow[__builtin_ctzll(rest)];                           \
            rest &= rest - 1;                                                   \
        }                                                                       \
        if (!anchored || k == 0) next |= a->first;                              \
        active = next & a->by_char[(c)];                                        \
        if (!at_end && (active & a->last)) return 1;                            \
        if (anchored && !active) return 0;                                      \
    } while (0)

/* 1: a match, 0: none, -1: undecided (ask the regex). */
static int decide(const automaton *a, PyObject *line) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(line);
    int kind = PyUnicode_KIND(line);
    const void *data = PyUnicode_DATA(line);
    int anchored = (a->flags & ANCHORED) != 0;
    int at_end = (a->flags & (END | END_STRING)) != 0;
    uint64_t active = 0;
    Py_ssize_t k;
    if ((a->flags & END) && n > 0 && PyUnicode_READ(kind, data, n - 1) == '\n') return -1;
    if (a->nullable && !at_end) return 1;
    if (kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *chars = (const Py_UCS1 *)data;
        for (k = 0; k < n; k++) STEP(chars[k]);
    } else {
        for (k = 0; k < n; k++) STEP(PyUnicode_READ(kind, data, k));
    }
    if (!at_end) return 0;
    return (active & a->last) || (a->nullable && (!anchored || n == 0));
}

static PyObject *stops(PyObject *self, PyObject *args) {
    Py_buffer packed;
    PyObject *lines, *search, *out = NULL;
    int on_match;
    Py_ssize_t first, i, n;
    automaton a;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*O!pnO:stops", &packed, &PyList_Type, &lines, &on_match,
                          &first, &search))
        return NULL;
    memset(&a, 0, sizeof a);
    if (packed.len < (Py_ssize_t)(HEADER * 8)) goto bad;
    memcpy(&a, packed.buf, 5 * 8);
    if (a.states > MAX_STATES ||
            packed.len != (Py_ssize_t)((HEADER + a.states + ASCII) * 8)) goto bad;
    memcpy(a.follow, (const char *)packed.buf + HEADER * 8, a.states * 8);
    memcpy(a.by_char, (const char *)packed.buf + (HEADER + a.states) * 8, ASCII * 8);
    PyBuffer_Release(&packed);
    out = PyList_New(0);
    if (out == NULL) return NULL;
    n = PyList_GET_SIZE(lines);
    for (i = 0; i < n; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        int matched;
        if (!PyUnicode_Check(line)) {
            PyErr_SetString(PyExc_TypeError, "stops() takes a list of str");
            goto fail;
        }
        if (PyUnicode_READY(line) < 0) goto fail;
        matched = decide(&a, line);
        if (matched < 0) {
            PyObject *found;
            Py_INCREF(line);  /* search() may change the list */
            found = PyObject_CallOneArg(search, line);
            Py_DECREF(line);
            if (found == NULL) goto fail;
            matched = found != Py_None;
            Py_DECREF(found);
        }
        if (matched == on_match) {
            PyObject *index = PyLong_FromSsize_t(first + i);
            int failed;
            if (index == NULL) goto fail;
            failed = PyList_Append(out, index);
            Py_DECREF(index);
            if (failed) goto fail;
        }
        if (n != PyList_GET_SIZE(lines)) {  /* search() changed the list */
            PyErr_SetString(PyExc_RuntimeError, "lines changed during stops()");
            goto fail;
        }
    }
    return out;
bad:
    PyBuffer_Release(&packed);
    PyErr_SetString(PyExc_ValueError, "not a packed LinesAutomaton");
    return NULL;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"stops", stops, METH_VARARGS,
     "stops(packed, lines, on_match, first, search) -> list[int]: first + i for each line "
     "in which the automaton (or search, where it cannot tell) finds a match, or none."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_line_automaton",
    "A multiline rule's line automaton (line_automaton.py is its specification).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__line_automaton(void) { return PyModule_Create(&module); }
