/* The compiled twin of logcap.sinks.loki.protobuf.encode_push_request_python.
 *
 * encode_push_request(streams) -> (payload: bytes, streams: int, entries: int, line_bytes: int,
 *                                  metadata_chars: int)
 *
 * The wire format, the proto3 omission rules and the edge cases (empty streams skipped, a
 * negative ts_ns split with floor division, a lone surrogate written as '?' as
 * str.encode("utf-8", "replace") does) are the Python module's: see its docstring. The two
 * encoders write the same bytes (tests/test_loki_request.py compares them with each other and
 * with the protobuf runtime).
 *
 * Three steps:
 * 1. collect: each stream's `labels` and `entries` (attribute reads, and a copy of `entries`
 *    when it is neither a list nor a tuple: the only step that may run Python code);
 * 2. plan: one walk over the entries, recording per entry its split timestamp and sizes and
 *    per string its UTF-8 bytes (an ASCII str is its own UTF-8, read in place; any other str
 *    is encoded into a bytes object kept until the end, with "replace" when it holds a lone
 *    surrogate), and each stream's size;
 * 3. write: one bytes object of the exact total size, filled from the plan.
 * Steps 2 and 3 take only exact shapes (an entry is a tuple, metadata a tuple or list of
 * 2-item tuples or lists, ts_ns an int, strings str; anything else is a TypeError) so that no
 * Python code runs while the plan's borrowed pointers are live.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define NANOS_PER_S 1000000000LL
#define TAG_FIELD1_LEN 0x0a /* field 1, length-delimited */
#define TAG_FIELD2_LEN 0x12 /* field 2, length-delimited */
#define TAG_FIELD3_LEN 0x1a /* field 3, length-delimited */
#define TAG_FIELD1_VARINT 0x08
#define TAG_FIELD2_VARINT 0x10

static inline Py_ssize_t
varint_size(uint64_t v)
{
#if defined(__GNUC__) || defined(__clang__)
    return v < 0x80 ? 1 : (Py_ssize_t)((70 - __builtin_clzll(v)) / 7);
#else
    Py_ssize_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
#endif
}

static inline char *
put_varint(char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (char)v;
    return p;
}

/* A length-delimited field with a body of `size` bytes, tag and length included. */
static inline Py_ssize_t
field_size(Py_ssize_t size)
{
    return 1 + varint_size((uint64_t)size) + size;
}

/* A string field: proto3 leaves an empty one out. */
static inline Py_ssize_t
string_field_size(Py_ssize_t size)
{
    return size ? field_size(size) : 0;
}

static inline char *
put_header(char *p, char tag, Py_ssize_t size)
{
    *p++ = tag;
    return put_varint(p, (uint64_t)size);
}

/* A str's UTF-8 bytes: in place (borrowed), or in `owned` (a lone surrogate replaced). */
typedef struct {
    const char *data;
    Py_ssize_t size;
    PyObject *owned;
} Utf8;

static inline char *
put_string_field(char *p, char tag, const Utf8 *text)
{
    if (text->size) {
        p = put_header(p, tag, text->size);
        memcpy(p, text->data, (size_t)text->size);
        p += text->size;
    }
    return p;
}

/* What the write step needs, in the order it writes. */
typedef struct {
    int64_t seconds;
    uint32_t nanos;
    uint32_t n_pairs;          /* structuredMetadata pairs: 2 * n_pairs strings after the line */
    Py_ssize_t body_size;      /* the EntryAdapter message, without its tag and length */
} EntryPlan;

typedef struct {
    PyObject *labels;          /* strong */
    PyObject *entries;         /* strong: a list or tuple */
    Py_ssize_t body_size;      /* the StreamAdapter message, without its tag and length */
} StreamPlan;

typedef struct {
    StreamPlan *streams;
    Py_ssize_t n_streams;
    EntryPlan *entries;
    Py_ssize_t n_entries;
    Utf8 *strings;             /* per stream its labels, per entry its line then name, value... */
    Py_ssize_t n_strings, strings_cap;
    Py_ssize_t line_bytes;
    Py_ssize_t metadata_chars; /* code points of the metadata's names and values */
} Plan;

static void
plan_free(Plan *plan)
{
    for (Py_ssize_t i = 0; i < plan->n_streams; i++) {
        Py_DECREF(plan->streams[i].labels);
        Py_DECREF(plan->streams[i].entries);
    }
    for (Py_ssize_t i = 0; i < plan->n_strings; i++) {
        Py_XDECREF(plan->strings[i].owned);
    }
    PyMem_Free(plan->streams);
    PyMem_Free(plan->entries);
    PyMem_Free(plan->strings);
}

/* Appends `text`'s UTF-8 to the plan's strings; returns it, or NULL with an exception. */
static const Utf8 *
plan_string(Plan *plan, PyObject *text, const char *what)
{
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", what, Py_TYPE(text)->tp_name);
        return NULL;
    }
    if (plan->n_strings == plan->strings_cap) {
        Py_ssize_t cap = plan->strings_cap * 2; /* not reached: count_strings is exact */
        Utf8 *grown = PyMem_Realloc(plan->strings, sizeof(Utf8) * (size_t)cap);
        if (grown == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        plan->strings = grown;
        plan->strings_cap = cap;
    }
    Utf8 *out = &plan->strings[plan->n_strings];
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) { /* a no-op, and deprecated, from 3.12 */
        return NULL;
    }
#endif
    if (PyUnicode_IS_ASCII(text)) {
        out->owned = NULL;
        out->data = (const char *)PyUnicode_DATA(text);
        out->size = PyUnicode_GET_LENGTH(text);
        plan->n_strings++;
        return out;
    }
    /* Not PyUnicode_AsUTF8AndSize: it would keep a UTF-8 copy inside the str for as long as
     * the str lives (a batch held for retries would grow past what its caps count). */
    out->owned = PyUnicode_AsUTF8String(text);
    if (out->owned == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            return NULL;
        }
        PyErr_Clear();
        out->owned = PyUnicode_AsEncodedString(text, "utf-8", "replace");
        if (out->owned == NULL) {
            return NULL;
        }
    }
    out->data = PyBytes_AS_STRING(out->owned);
    out->size = PyBytes_GET_SIZE(out->owned);
    plan->n_strings++;
    return out;
}

/* ts_ns as (seconds, nanos) with floor division: nanos in [0, 1e9). */
static int
split_timestamp(PyObject *ts, int64_t *seconds, uint32_t *nanos)
{
    if (!PyLong_Check(ts)) {
        PyErr_Format(PyExc_TypeError, "ts_ns must be int, not %.100s", Py_TYPE(ts)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(ts, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (!overflow) {
        long long s = v / NANOS_PER_S, n = v % NANOS_PER_S;
        if (n < 0) {
            n += NANOS_PER_S;
            s -= 1;
        }
        *seconds = s;
        *nanos = (uint32_t)n;
        return 0;
    }
    /* beyond int64 nanoseconds, the seconds may still fit an int64: int's own divmod (not a
     * subclass's, which could run Python code) */
    PyObject *billion = PyLong_FromLongLong(NANOS_PER_S);
    if (billion == NULL) {
        return -1;
    }
    PyObject *qr = PyLong_Type.tp_as_number->nb_divmod(ts, billion);
    Py_DECREF(billion);
    if (qr == NULL) {
        return -1;
    }
    long long s = PyLong_AsLongLong(PyTuple_GET_ITEM(qr, 0));
    long long n = s == -1 && PyErr_Occurred() ? -1 : PyLong_AsLongLong(PyTuple_GET_ITEM(qr, 1));
    Py_DECREF(qr);
    if (n == -1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_SetString(PyExc_OverflowError, "ts_ns is out of range: its seconds exceed int64");
        }
        return -1;
    }
    *seconds = s;
    *nanos = (uint32_t)n;
    return 0;
}

static inline Py_ssize_t
timestamp_body_size(int64_t seconds, uint32_t nanos)
{
    return (seconds ? 1 + varint_size((uint64_t)seconds) : 0)
           + (nanos ? 1 + varint_size(nanos) : 0);
}

/* The items of a tuple or list (borrowed), else a TypeError. */
static int
tuple_or_list_items(PyObject *obj, PyObject ***items, Py_ssize_t *size, const char *what)
{
    if (PyTuple_Check(obj)) {
        *items = &PyTuple_GET_ITEM(obj, 0);
        *size = PyTuple_GET_SIZE(obj);
        return 0;
    }
    if (PyList_Check(obj)) {
        *items = PySequence_Fast_ITEMS(obj);
        *size = PyList_GET_SIZE(obj);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s must be a tuple or list, not %.100s", what,
                 Py_TYPE(obj)->tp_name);
    return -1;
}

/* Plans the structuredMetadata fields; returns their size, or -1 with an exception. */
static Py_ssize_t
plan_metadata(Plan *plan, PyObject *metadata, uint32_t *n_pairs)
{
    *n_pairs = 0;
    if (metadata == Py_None) {
        return 0;
    }
    PyObject **pairs;
    Py_ssize_t count, total = 0;
    if (tuple_or_list_items(metadata, &pairs, &count, "metadata") < 0) {
        return -1;
    }
    if (count > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many metadata pairs in one entry");
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject **items;
        Py_ssize_t size;
        if (tuple_or_list_items(pairs[i], &items, &size, "a metadata pair") < 0) {
            return -1;
        }
        if (size != 2) {
            PyErr_Format(PyExc_ValueError,
                         "a metadata pair is (name, value): expected 2 items, got %zd", size);
            return -1;
        }
        const Utf8 *name = plan_string(plan, items[0], "a metadata name");
        if (name == NULL) {
            return -1;
        }
        Py_ssize_t name_field = string_field_size(name->size);
        const Utf8 *value = plan_string(plan, items[1], "a metadata value");
        if (value == NULL) {
            return -1;
        }
        total += field_size(name_field + string_field_size(value->size));
        plan->metadata_chars += PyUnicode_GET_LENGTH(items[0]) + PyUnicode_GET_LENGTH(items[1]);
    }
    *n_pairs = (uint32_t)count;
    return total;
}

static int
plan_entry(Plan *plan, PyObject *entry, EntryPlan *out)
{
    if (!PyTuple_Check(entry)) {
        PyErr_Format(PyExc_TypeError, "an entry must be a (ts_ns, line, metadata) tuple, not %.100s",
                     Py_TYPE(entry)->tp_name);
        return -1;
    }
    if (PyTuple_GET_SIZE(entry) != 3) {
        PyErr_Format(PyExc_ValueError,
                     "an entry is (ts_ns, line, metadata): expected 3 items, got %zd",
                     PyTuple_GET_SIZE(entry));
        return -1;
    }
    if (split_timestamp(PyTuple_GET_ITEM(entry, 0), &out->seconds, &out->nanos) < 0) {
        return -1;
    }
    const Utf8 *line = plan_string(plan, PyTuple_GET_ITEM(entry, 1), "a line");
    if (line == NULL) {
        return -1;
    }
    Py_ssize_t line_size = line->size;
    Py_ssize_t metadata_size = plan_metadata(plan, PyTuple_GET_ITEM(entry, 2), &out->n_pairs);
    if (metadata_size < 0) {
        return -1;
    }
    plan->line_bytes += line_size;
    out->body_size = 2 + timestamp_body_size(out->seconds, out->nanos)
                     + string_field_size(line_size) + metadata_size;
    return 0;
}

/* Step 1: the non-empty streams' labels and entries (may run Python code). */
static int
collect_streams(Plan *plan, PyObject *streams)
{
    Py_ssize_t n_all = PySequence_Fast_GET_SIZE(streams);
    plan->streams = PyMem_Malloc(sizeof(StreamPlan) * (size_t)(n_all ? n_all : 1));
    if (plan->streams == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n_all; i++) {
        PyObject *stream = PySequence_Fast_ITEMS(streams)[i];
        PyObject *entries_obj = PyObject_GetAttrString(stream, "entries");
        if (entries_obj == NULL) {
            return -1;
        }
        PyObject *entries = PySequence_Fast(entries_obj, "a stream's entries must be a sequence");
        Py_DECREF(entries_obj);
        if (entries == NULL) {
            return -1;
        }
        if (PySequence_Fast_GET_SIZE(entries) == 0) {
            Py_DECREF(entries);
            continue;
        }
        PyObject *labels = PyObject_GetAttrString(stream, "labels");
        if (labels == NULL) {
            Py_DECREF(entries);
            return -1;
        }
        plan->streams[plan->n_streams].labels = labels;
        plan->streams[plan->n_streams].entries = entries;
        plan->n_streams++;
        plan->n_entries += PySequence_Fast_GET_SIZE(entries);
    }
    return 0;
}

/* How many strings the plan will hold (labels, lines, metadata names and values), so that
 * its array is allocated once; a shape the plan refuses counts as no pairs. */
static Py_ssize_t
count_strings(const Plan *plan)
{
    Py_ssize_t n = plan->n_streams + plan->n_entries;
    for (Py_ssize_t i = 0; i < plan->n_streams; i++) {
        PyObject **entries = PySequence_Fast_ITEMS(plan->streams[i].entries);
        Py_ssize_t count = PySequence_Fast_GET_SIZE(plan->streams[i].entries);
        for (Py_ssize_t j = 0; j < count; j++) {
            PyObject *entry = entries[j];
            if (PyTuple_Check(entry) && PyTuple_GET_SIZE(entry) == 3) {
                PyObject *metadata = PyTuple_GET_ITEM(entry, 2);
                if (PyTuple_Check(metadata)) {
                    n += 2 * PyTuple_GET_SIZE(metadata);
                }
                else if (PyList_Check(metadata)) {
                    n += 2 * PyList_GET_SIZE(metadata);
                }
            }
        }
    }
    return n ? n : 1;
}

/* Step 2: everything measured; returns the payload's size, or -1 with an exception. */
static Py_ssize_t
plan_streams(Plan *plan)
{
    plan->entries = PyMem_Malloc(sizeof(EntryPlan) * (size_t)(plan->n_entries ? plan->n_entries : 1));
    plan->strings_cap = count_strings(plan);
    plan->strings = PyMem_Malloc(sizeof(Utf8) * (size_t)plan->strings_cap);
    if (plan->entries == NULL || plan->strings == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t total = 0;
    EntryPlan *entry_plan = plan->entries;
    for (Py_ssize_t i = 0; i < plan->n_streams; i++) {
        StreamPlan *stream = &plan->streams[i];
        const Utf8 *labels = plan_string(plan, stream->labels, "labels");
        if (labels == NULL) {
            return -1;
        }
        Py_ssize_t size = string_field_size(labels->size);
        PyObject **entries = PySequence_Fast_ITEMS(stream->entries);
        Py_ssize_t count = PySequence_Fast_GET_SIZE(stream->entries);
        for (Py_ssize_t j = 0; j < count; j++, entry_plan++) {
            if (plan_entry(plan, entries[j], entry_plan) < 0) {
                return -1;
            }
            size += field_size(entry_plan->body_size);
        }
        stream->body_size = size;
        total += field_size(size);
    }
    return total;
}

/* Step 3: the payload from the plan (`p` has exactly the planned size). Returns its end. */
static char *
write_streams(const Plan *plan, char *p)
{
    const EntryPlan *entry = plan->entries;
    const Utf8 *text = plan->strings;
    for (Py_ssize_t i = 0; i < plan->n_streams; i++) {
        const StreamPlan *stream = &plan->streams[i];
        p = put_header(p, TAG_FIELD1_LEN, stream->body_size);
        p = put_string_field(p, TAG_FIELD1_LEN, text++);
        Py_ssize_t count = PySequence_Fast_GET_SIZE(stream->entries);
        for (Py_ssize_t j = 0; j < count; j++, entry++) {
            p = put_header(p, TAG_FIELD2_LEN, entry->body_size);
            /* the timestamp, always present (gogoproto nullable=false), at most 17 bytes */
            *p++ = TAG_FIELD1_LEN;
            *p++ = (char)timestamp_body_size(entry->seconds, entry->nanos);
            if (entry->seconds) {
                *p++ = TAG_FIELD1_VARINT;
                p = put_varint(p, (uint64_t)entry->seconds); /* int64: two's complement */
            }
            if (entry->nanos) {
                *p++ = TAG_FIELD2_VARINT;
                p = put_varint(p, entry->nanos);
            }
            p = put_string_field(p, TAG_FIELD2_LEN, text++);
            for (uint32_t k = 0; k < entry->n_pairs; k++, text += 2) {
                Py_ssize_t body = string_field_size(text[0].size) + string_field_size(text[1].size);
                p = put_header(p, TAG_FIELD3_LEN, body);
                p = put_string_field(p, TAG_FIELD1_LEN, &text[0]);
                p = put_string_field(p, TAG_FIELD2_LEN, &text[1]);
            }
        }
    }
    return p;
}

static PyObject *
encode_push_request(PyObject *module, PyObject *streams_arg)
{
    (void)module;
    PyObject *streams = PySequence_Fast(streams_arg, "streams must be iterable");
    if (streams == NULL) {
        return NULL;
    }
    Plan plan = {0};
    PyObject *payload = NULL;
    Py_ssize_t total;
    if (collect_streams(&plan, streams) < 0 || (total = plan_streams(&plan)) < 0) {
        goto done;
    }
    payload = PyBytes_FromStringAndSize(NULL, total);
    if (payload == NULL) {
        goto done;
    }
    char *end = write_streams(&plan, PyBytes_AS_STRING(payload));
    if (end != PyBytes_AS_STRING(payload) + total) {
        Py_CLEAR(payload);
        PyErr_SetString(PyExc_SystemError, "the PushRequest written differs from its plan");
        goto done;
    }
    payload = Py_BuildValue("(Nnnnn)", payload, plan.n_streams, plan.n_entries, plan.line_bytes,
                            plan.metadata_chars);
done:
    plan_free(&plan);
    Py_DECREF(streams);
    return payload;
}

PyDoc_STRVAR(encode_push_request_doc,
"encode_push_request(streams, /)\n--\n\n"
"Serialize streams (objects with .labels and .entries) as a logproto.PushRequest.\n\n"
"Returns (payload, streams, entries, line_bytes, metadata_chars): the uncompressed message,\n"
"the number of streams and entries written (streams without entries are skipped), the\n"
"UTF-8 size of the lines and the code points of the metadata's names and values. Byte for byte what logcap.sinks.loki.protobuf.encode_push_request_python writes.");

static PyMethodDef methods[] = {
    {"encode_push_request", encode_push_request, METH_O, encode_push_request_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "logcap.sinks.loki._protobuf",
    .m_doc = "Loki's PushRequest serialized in C: see logcap.sinks.loki.protobuf.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__protobuf(void)
{
    return PyModuleDef_Init(&module_def);
}
