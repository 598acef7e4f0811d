/* Snappy *block* compression (the format Loki's push endpoint decodes), plain CPython C API.
 *
 * Output, as google/snappy's format_description.txt defines it: the uncompressed length as a
 * little-endian base-128 varint, then elements, each starting with a tag byte whose low two
 * bits say what it is:
 *   00 literal: (len-1) in the upper six bits when len <= 60, else 60..63 there and (len-1)
 *      in the next 1..4 bytes, little-endian; then the bytes themselves;
 *   01 copy, 1-byte offset: len 4..11 as (len-4) in bits 2..4, offset < 2048 as bits 5..7
 *      (offset's high 3 bits) and one more byte (its low 8);
 *   10 copy, 2-byte offset: len 1..64 as (len-1) in the upper six bits, offset as 16 bits LE.
 * (11, a 4-byte offset, is never needed: matches never cross a 64 KiB fragment.)
 *
 * The compressor is the reference design: the input is cut into fragments of at most 64 KiB,
 * compressed independently. In a fragment, a table of 16-bit positions indexed by a
 * multiplicative hash of the 4 bytes at a position finds a candidate earlier occurrence;
 * if its 4 bytes are equal it is a match, extended greedily 8 bytes at a time, and emitted
 * as copies (of at most 64 bytes each). After a match, the positions just before and at its
 * end are hashed, so a match that continues right away is found without a new search. While
 * nothing matches, the search steps further and further (one more byte every 32 misses), so
 * incompressible input is crossed quickly. The table has a power-of-two size between 2**8 and
 * 2**14 entries, just above the fragment's length: a short input clears a small table.
 * Matching stops 15 bytes before a fragment's end (the rest is a literal), which keeps every
 * 4- and 8-byte load inside the fragment.
 *
 * The GIL is released while compressing an input of at least RELEASE_GIL_BYTES: the
 * compressor then writes only into memory it owns (a bytes object no one else holds yet and
 * its own hash table) and reads the caller's buffer, held by a buffer export. Below that
 * size, releasing and re-taking the GIL would cost more than it lets another thread do.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define FRAGMENT_BYTES 65536
#define MIN_TABLE_BITS 8
#define MAX_TABLE_BITS 14
#define INPUT_MARGIN 15
#define HASH_MULTIPLIER 0x1e35a7bdu
#ifndef RELEASE_GIL_BYTES /* -D overrides it: a build holding the GIL, to measure what releasing it does */
#define RELEASE_GIL_BYTES 16384
#endif

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define WORDWISE_MATCH 1
#else
#define WORDWISE_MATCH 0
#endif

static inline uint32_t
load32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint32_t
hash4(uint32_t four_bytes, int shift)
{
    return (four_bytes * HASH_MULTIPLIER) >> shift;
}

/* The largest output for an input of n bytes: literals cost at most 3 bytes of header per
 * 64 KiB fragment, copies never more than the bytes they stand for plus a bounded overhead
 * (the reference's bound, 32 + n + n/6, covers both with room to spare). */
static inline size_t
max_compressed_bytes(size_t n)
{
    return 32 + n + n / 6;
}

static uint8_t *
put_uvarint(uint8_t *op, uint32_t value)
{
    while (value >= 0x80) {
        *op++ = (uint8_t)(value | 0x80);
        value >>= 7;
    }
    *op++ = (uint8_t)value;
    return op;
}

static uint8_t *
put_literal(uint8_t *op, const uint8_t *bytes, size_t len)
{
    size_t n = len - 1;
    if (n < 60) {
        *op++ = (uint8_t)(n << 2);
    }
    else {
        uint8_t *tag = op++;
        int width = 0;
        while (n) {
            *op++ = (uint8_t)n;
            n >>= 8;
            width++;
        }
        *tag = (uint8_t)((59 + width) << 2);
    }
    memcpy(op, bytes, len);
    return op + len;
}

/* The literal before a match: most are short, and a short one is copied as a fixed 16 bytes
 * (one load and store, no call). That reads at most 15 bytes past the literal, still inside
 * the fragment (a match starts at least INPUT_MARGIN bytes before its end), and writes at
 * most 15 bytes past it, into room the output bound keeps (what is written so far never
 * exceeds the input consumed by more than the headers of the fragments' last literals). */
static inline uint8_t *
put_literal_before_match(uint8_t *op, const uint8_t *bytes, size_t len)
{
    if (len <= 16) {
        *op++ = (uint8_t)((len - 1) << 2);
        memcpy(op, bytes, 16);
        return op + len;
    }
    return put_literal(op, bytes, len);
}

/* One copy element: 4 <= len <= 64, offset < 65536. */
static inline uint8_t *
put_short_copy(uint8_t *op, size_t offset, size_t len)
{
    if (len < 12 && offset < 2048) {
        *op++ = (uint8_t)(1 | ((len - 4) << 2) | ((offset >> 8) << 5));
        *op++ = (uint8_t)offset;
    }
    else {
        *op++ = (uint8_t)(2 | ((len - 1) << 2));
        *op++ = (uint8_t)offset;
        *op++ = (uint8_t)(offset >> 8);
    }
    return op;
}

/* A copy of any length >= 4: 64-byte elements, then what is left (a 60-byte element first
 * when 65..67 are left, so the last one is at least 4 long and may use the 1-byte form). */
static uint8_t *
put_copy(uint8_t *op, size_t offset, size_t len)
{
    while (len >= 68) {
        op = put_short_copy(op, offset, 64);
        len -= 64;
    }
    if (len > 64) {
        op = put_short_copy(op, offset, 60);
        len -= 60;
    }
    return put_short_copy(op, offset, len);
}

/* How many bytes from `earlier` equal those from `later` (earlier < later), not reading at or
 * past `end`, which bounds `later`. */
static inline size_t
common_prefix(const uint8_t *earlier, const uint8_t *later, const uint8_t *end)
{
    size_t n = 0;
#if WORDWISE_MATCH
    while (later + n + 8 <= end) {
        uint64_t a, b;
        memcpy(&a, earlier + n, 8);
        memcpy(&b, later + n, 8);
        if (a != b) {
            return n + ((size_t)__builtin_ctzll(a ^ b) >> 3);
        }
        n += 8;
    }
#endif
    while (later + n < end && earlier[n] == later[n]) {
        n++;
    }
    return n;
}

static int
table_bits_for(size_t fragment_len)
{
    int bits = MIN_TABLE_BITS;
    while (bits < MAX_TABLE_BITS && ((size_t)1 << bits) < fragment_len) {
        bits++;
    }
    return bits;
}

/* Compress one fragment (at most FRAGMENT_BYTES) into op; returns the new end of output. */
static uint8_t *
compress_fragment(const uint8_t *start, size_t len, uint8_t *op, uint16_t *table)
{
    const uint8_t *end = start + len;
    const uint8_t *pending = start; /* first byte not yet emitted */
    if (len >= INPUT_MARGIN) {
        const int bits = table_bits_for(len);
        const int shift = 32 - bits;
        const uint8_t *last_match_start = end - INPUT_MARGIN;
        const uint8_t *ip = start + 1;
        uint32_t next_hash = hash4(load32(ip), shift);
        memset(table, 0, sizeof(uint16_t) << bits);
        for (;;) {
            /* Search: step 1 byte per probe for 32 probes, then 2, then 3... */
            uint32_t misses = 32;
            const uint8_t *next_ip = ip;
            const uint8_t *candidate;
            do {
                uint32_t h = next_hash;
                ip = next_ip;
                next_ip = ip + (misses++ >> 5);
                if (next_ip > last_match_start) {
                    goto rest_as_literal;
                }
                next_hash = hash4(load32(next_ip), shift);
                candidate = start + table[h];
                table[h] = (uint16_t)(ip - start);
            } while (load32(ip) != load32(candidate));

            op = put_literal_before_match(op, pending, (size_t)(ip - pending));
            /* Emit the match, and as long as the position where it ends starts another one
             * (found through the table), that one too. */
            for (;;) {
                size_t matched = 4 + common_prefix(candidate + 4, ip + 4, end);
                size_t offset = (size_t)(ip - candidate);
                uint32_t h;
                ip += matched;
                op = put_copy(op, offset, matched);
                pending = ip;
                if (ip >= last_match_start) {
                    goto rest_as_literal;
                }
                table[hash4(load32(ip - 1), shift)] = (uint16_t)(ip - 1 - start);
                h = hash4(load32(ip), shift);
                candidate = start + table[h];
                table[h] = (uint16_t)(ip - start);
                if (load32(ip) != load32(candidate)) {
                    break;
                }
            }
            ip++;
            next_hash = hash4(load32(ip), shift);
        }
    }
rest_as_literal:
    if (pending < end) {
        op = put_literal(op, pending, (size_t)(end - pending));
    }
    return op;
}

static PyObject *
snappy_compress(PyObject *module, PyObject *arg)
{
    Py_buffer in;
    PyObject *out;
    uint16_t *table;
    uint8_t *op0, *op;
    (void)module;

    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if ((unsigned long long)in.len > 0xFFFFFFFFull) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, "snappy: input longer than 2**32 - 1 bytes");
        return NULL;
    }
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)max_compressed_bytes((size_t)in.len));
    if (out == NULL) {
        PyBuffer_Release(&in);
        return NULL;
    }
    table = PyMem_RawMalloc(sizeof(uint16_t) << MAX_TABLE_BITS);
    if (table == NULL) {
        Py_DECREF(out);
        PyBuffer_Release(&in);
        return PyErr_NoMemory();
    }
    op0 = (uint8_t *)PyBytes_AS_STRING(out);
    {
        const uint8_t *data = (const uint8_t *)in.buf;
        const size_t len = (size_t)in.len;
        const int release = len >= RELEASE_GIL_BYTES;
        PyThreadState *saved = NULL;
        size_t pos;
        if (release) {
            saved = PyEval_SaveThread();
        }
        op = put_uvarint(op0, (uint32_t)len);
        for (pos = 0; pos < len; pos += FRAGMENT_BYTES) {
            size_t n = len - pos < FRAGMENT_BYTES ? len - pos : FRAGMENT_BYTES;
            op = compress_fragment(data + pos, n, op, table);
        }
        if (release) {
            PyEval_RestoreThread(saved);
        }
    }
    PyMem_RawFree(table);
    PyBuffer_Release(&in);
    if (_PyBytes_Resize(&out, (Py_ssize_t)(op - op0)) < 0) {
        return NULL;
    }
    return out;
}

static PyMethodDef snappy_methods[] = {
    {"compress", snappy_compress, METH_O,
     "compress(data, /)\n--\n\n"
     "``data`` (any bytes-like object, below 4 GiB) in snappy's block format: the length\n"
     "preamble, then literals and copies; no stream framing. Releases the GIL from 16 KiB."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef snappy_module = {
    PyModuleDef_HEAD_INIT,
    "logcap.sinks.loki._snappy",
    "Snappy block-format compression (the compressor only), for Loki push bodies.",
    -1,
    snappy_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__snappy(void)
{
    PyObject *m = PyModule_Create(&snappy_module);
    if (m != NULL && PyModule_AddIntConstant(m, "RELEASE_GIL_BYTES", RELEASE_GIL_BYTES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
