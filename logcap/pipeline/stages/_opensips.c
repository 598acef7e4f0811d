/* The opensips stage's parsing, compiled: what OpensipsStage does to a batch (opensips.py is
 * the specification and the fallback), without the regex engine.
 *
 * parse(lines, fields, stamps, convert) -> (no_header, unparsable), per entry i:
 *   - "#015#012" in lines[i] becomes "\r\n" (lines[i] is replaced);
 *   - the header (opensips.HEADER, matched at the start) gives the fields time, pid, level and,
 *     when present, module and function, merged into fields[i] (a new dict if it is None);
 *     stamps[i] becomes convert(time, stamps[i]) unless that is None (then: unparsable), with
 *     convert called once per distinct time text of the batch (as the Python stage caches it);
 *   - the six identifiers (opensips.IDENTIFIERS) are searched after the header (from 0 without
 *     one): the leftmost match of each expression, its group 1 stored under the field's name.
 *
 * parse_attach(lines, stamps, convert, label_plan, labels, cache, limit, metadata_plan,
 *              metadata, merge) -> (no_header, unparsable): the same parsing, with the labels
 *   and structured_metadata stages after it done at once (fused.py, where the compile step
 *   finds them) and no fields made: a plan is the stage's (name, field number) pairs, the
 *   number being the field's place in opensips.FIELDS (the label plan sorted by name). Per
 *   entry, the present values' label pairs (one tuple shared by the entries whose values are
 *   the same: the entry before's, else cache[values, None for absent], made on a miss, the
 *   cache cleared first when it holds limit) and metadata pairs (in the plan's order; a pair
 *   reused from the entry before when its value is the same object) are stored into
 *   labels[i] and metadata[i] as attach.py's stages store them (merge for pairs already
 *   there). A value the same as the entry before's is the same object (text_of).
 *
 * Each matcher below follows its expression's backtracking order; where a comment says
 * "deterministic", the classes on either side of a greedy repeat are disjoint, so the repeat
 * can only succeed at its longest extent. Character classes are Python's for str patterns:
 * \d = Py_UNICODE_ISDECIMAL, \s = Py_UNICODE_ISSPACE, \w = Py_UNICODE_ISALNUM or '_', and
 * (?i:...) on ASCII letters, where only 'i' has non-ASCII equivalents (U+0130, U+0131).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_store.h" /* store: how the fused step stores pairs */

typedef struct {
    int kind;
    const void *data;
    Py_ssize_t n;
} Text;

static inline Py_UCS4 at(const Text *t, Py_ssize_t i) {
    return PyUnicode_READ(t->kind, t->data, i);
}

static inline int is_digit(Py_UCS4 c) {
    return c < 128 ? (c >= '0' && c <= '9') : Py_UNICODE_ISDECIMAL(c);
}

static inline int is_space(Py_UCS4 c) { return Py_UNICODE_ISSPACE(c); }

static inline int is_word(Py_UCS4 c) {
    if (c < 128)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
               || c == '_';
    return Py_UNICODE_ISALNUM(c);
}

static inline int is_blank(const Text *t, Py_ssize_t p) { /* [ \t] */
    if (p >= t->n) return 0;
    Py_UCS4 c = at(t, p);
    return c == ' ' || c == '\t';
}

static inline int char_is(const Text *t, Py_ssize_t p, Py_UCS4 c) {
    return p < t->n && at(t, p) == c;
}

/* The ASCII text s (length len) at p, exactly. */
static int lit(const Text *t, Py_ssize_t p, const char *s, Py_ssize_t len) {
    if (p < 0 || p + len > t->n) return 0;
    for (Py_ssize_t k = 0; k < len; k++)
        if (at(t, p + k) != (Py_UCS4)(unsigned char)s[k]) return 0;
    return 1;
}
#define LIT(t, p, s) lit((t), (p), (s), (Py_ssize_t)(sizeof(s) - 1))

/* The lowercase ASCII text s at p, ignoring case as (?i:...) does. */
static int ci(const Text *t, Py_ssize_t p, const char *s, Py_ssize_t len) {
    if (p + len > t->n) return 0;
    for (Py_ssize_t k = 0; k < len; k++) {
        Py_UCS4 c = at(t, p + k), want = (Py_UCS4)(unsigned char)s[k];
        if (c == want) continue;
        if (want >= 'a' && want <= 'z' && c == want - 32) continue;
        if (want == 'i' && (c == 0x130 || c == 0x131)) continue;
        return 0;
    }
    return 1;
}
#define CI(t, p, s) ci((t), (p), (s), (Py_ssize_t)(sizeof(s) - 1))

/* ---- the header ---------------------------------------------------------------------- */

typedef struct {
    Py_ssize_t time_e, pid_s, pid_e, level_s, level_e, module_s, module_e, function_e, end;
} Header;

static const char *const LEVEL_NAMES[] = {"ALERT", "CRITICAL", "CRIT", "ERROR", "WARNING",
                                          "NOTICE", "INFO", "DBG", "DEBUG", "BUG"};

/* Where (?P<time>...) ends (-1: no time). The alternatives start with a digit and an
 * uppercase ASCII letter: at most one applies. */
static Py_ssize_t time_end(const Text *t) {
    Py_ssize_t n = t->n;
    if (n == 0) return -1;
    Py_UCS4 c = at(t, 0);
    if (is_digit(c)) { /* \d{4}-\d\d-\d\dT\S+ (\S+ deterministic: a space follows) */
        static const char shape[] = "dddd-dd-ddT";
        if (n < 12) return -1;
        for (Py_ssize_t k = 0; k < 11; k++) {
            Py_UCS4 x = at(t, k);
            if (shape[k] == 'd' ? !is_digit(x) : x != (Py_UCS4)shape[k]) return -1;
        }
        Py_ssize_t p = 11;
        while (p < n && !is_space(at(t, p))) p++;
        return p > 11 ? p : -1;
    }
    if (c >= 'A' && c <= 'Z') { /* [A-Z][a-z]{2}[ ][ \d]\d[ ]\d\d:\d\d:\d\d */
        if (n < 15) return -1;
        for (Py_ssize_t k = 1; k < 3; k++) {
            Py_UCS4 x = at(t, k);
            if (x < 'a' || x > 'z') return -1;
        }
        Py_UCS4 x4 = at(t, 4);
        if (at(t, 3) != ' ' || (x4 != ' ' && !is_digit(x4)) || !is_digit(at(t, 5))
            || at(t, 6) != ' ' || !is_digit(at(t, 7)) || !is_digit(at(t, 8))
            || at(t, 9) != ':' || !is_digit(at(t, 10)) || !is_digit(at(t, 11))
            || at(t, 12) != ':' || !is_digit(at(t, 13)) || !is_digit(at(t, 14)))
            return -1;
        return 15;
    }
    return -1;
}

/* [\w./-]*\[(?P<pid>\d+)\]:?[ ](?P<level>...):(?:(?P<module>\w+):(?P<function>\w+):[ ])?
 * from p; every repeat is deterministic, and the level names followed by ':' exclude each
 * other. */
static int header_rest(const Text *t, Py_ssize_t p, Header *h) {
    Py_ssize_t n = t->n;
    while (p < n) {
        Py_UCS4 c = at(t, p);
        if (!(is_word(c) || c == '.' || c == '/' || c == '-')) break;
        p++;
    }
    if (!char_is(t, p, '[')) return 0;
    h->pid_s = ++p;
    while (p < n && is_digit(at(t, p))) p++;
    if (p == h->pid_s || !char_is(t, p, ']')) return 0;
    h->pid_e = p++;
    if (char_is(t, p, ':')) p++;
    if (!char_is(t, p, ' ')) return 0;
    p++;
    h->level_s = -1;
    for (size_t k = 0; k < sizeof(LEVEL_NAMES) / sizeof(LEVEL_NAMES[0]); k++) {
        Py_ssize_t len = (Py_ssize_t)strlen(LEVEL_NAMES[k]);
        if (lit(t, p, LEVEL_NAMES[k], len) && char_is(t, p + len, ':')) {
            h->level_s = p;
            h->level_e = p + len;
            break;
        }
    }
    if (h->level_s < 0) return 0;
    p = h->level_e + 1;
    h->module_s = -1;
    h->end = p;
    Py_ssize_t q = p;
    while (q < n && is_word(at(t, q))) q++;
    if (q > p && char_is(t, q, ':')) {
        Py_ssize_t r = q + 1;
        while (r < n && is_word(at(t, r))) r++;
        if (r > q + 1 && char_is(t, r, ':') && char_is(t, r + 1, ' ')) {
            h->module_s = p;
            h->module_e = q;
            h->function_e = r;
            h->end = r + 2;
        }
    }
    return 1;
}

/* HEADER.match: 1 and h filled, or 0. */
static int header(const Text *t, Header *h) {
    Py_ssize_t p = time_end(t);
    if (p < 0 || !char_is(t, p, ' ')) return 0;
    h->time_e = p++;
    /* (?:[^\s\[]+[ ])? tried first with the host word (deterministic), then without it */
    Py_ssize_t q = p;
    while (q < t->n) {
        Py_UCS4 c = at(t, q);
        if (is_space(c) || c == '[') break;
        q++;
    }
    if (q > p && char_is(t, q, ' ') && header_rest(t, q + 1, h)) return 1;
    return header_rest(t, p, h);
}

/* ---- the identifiers ----------------------------------------------------------------- */

enum { CALL_ID, FROM_TAG, TO_TAG, METHOD, STATUS, SRC_IP, N_IDS };
static const char *const ID_NAMES[N_IDS] = {"call_id", "from_tag", "to_tag", "method",
                                            "status", "src_ip"};
static PyObject *id_keys[N_IDS];

/* A matcher: whether the expression matches at s; if so, group 1 is [*gs, *ge). */
typedef int (*Matcher)(const Text *t, Py_ssize_t s, Py_ssize_t *gs, Py_ssize_t *ge);

/* Which ASCII characters end a value: \s and ";," (STOP_CALL_ID), \s and ";>," (STOP_TAG). */
static unsigned char STOP_CALL_ID[128], STOP_TAG[128];

static void init_stops(void) {
    for (int c = 0; c < 128; c++)
        STOP_CALL_ID[c] = STOP_TAG[c] = (unsigned char)(Py_UNICODE_ISSPACE(c) != 0);
    STOP_CALL_ID[';'] = STOP_CALL_ID[','] = 1;
    STOP_TAG[';'] = STOP_TAG['>'] = STOP_TAG[','] = 1;
}

/* A run of at least one character that is neither \s nor marked in stop. */
static int value_run(const Text *t, Py_ssize_t p, const unsigned char *stop, Py_ssize_t *gs,
                     Py_ssize_t *ge) {
    Py_ssize_t q = p;
    while (q < t->n) {
        Py_UCS4 c = at(t, q);
        if (c < 128 ? stop[c] : is_space(c)) break;
        q++;
    }
    if (q == p) return 0;
    *gs = p;
    *ge = q;
    return 1;
}

/* [ \t]*:[ \t]*([^\s;,]+) */
static int call_id_tail(const Text *t, Py_ssize_t p, Py_ssize_t *gs, Py_ssize_t *ge) {
    while (is_blank(t, p)) p++;
    if (!char_is(t, p, ':')) return 0;
    p++;
    while (is_blank(t, p)) p++;
    return value_run(t, p, STOP_CALL_ID, gs, ge);
}

/* [cC\n](?:(?<=[cC])(?:all|ALL)[-_]?(?:id|Id|ID)[=:][ \t]*|(?<=\n)(?i:Call-ID|i)[ \t]*:[ \t]*)
 * ([^\s;,]+) */
static int match_call_id(const Text *t, Py_ssize_t s, Py_ssize_t *gs, Py_ssize_t *ge) {
    Py_UCS4 c = at(t, s);
    Py_ssize_t p = s + 1;
    if (c == 'c' || c == 'C') {
        if (!LIT(t, p, "all") && !LIT(t, p, "ALL")) return 0;
        p += 3;
        if (char_is(t, p, '-') || char_is(t, p, '_')) p++;
        if (!LIT(t, p, "id") && !LIT(t, p, "Id") && !LIT(t, p, "ID")) return 0;
        p += 2;
        if (!char_is(t, p, '=') && !char_is(t, p, ':')) return 0;
        p++;
        while (is_blank(t, p)) p++;
        return value_run(t, p, STOP_CALL_ID, gs, ge);
    }
    if (c == '\n') {
        if (CI(t, p, "call-id") && call_id_tail(t, p + 7, gs, ge)) return 1;
        return CI(t, p, "i") && call_id_tail(t, p + 1, gs, ge);
    }
    return 0;
}

/* \n(?i:WORD|W)[ \t]*:[^\r\n]*?;(?i:tag)=([^\s;>,]+) from p (after the \n): the first ';'
 * of the line after the ':' followed by tag= and a value. */
static int dump_tag(const Text *t, Py_ssize_t p, Py_ssize_t *gs, Py_ssize_t *ge) {
    while (is_blank(t, p)) p++;
    if (!char_is(t, p, ':')) return 0;
    for (p++; p < t->n; p++) {
        Py_UCS4 c = at(t, p);
        if (c == ';' && CI(t, p + 1, "tag") && char_is(t, p + 4, '=')
            && value_run(t, p + 5, STOP_TAG, gs, ge))
            return 1;
        if (c == '\r' || c == '\n') return 0;
    }
    return 0;
}

/* (?:WORD_?tag=|\n(?i:WORD|W)[ \t]*:[^\r\n]*?;(?i:tag)=)([^\s;>,]+), WORD (length len)
 * being "from" or "to" and W its first letter. */
static int tag_of(const Text *t, Py_ssize_t s, const char *word, Py_ssize_t len,
                  Py_ssize_t *gs, Py_ssize_t *ge) {
    Py_UCS4 c = at(t, s);
    if (c == (Py_UCS4)word[0]) {
        if (!lit(t, s, word, len)) return 0;
        Py_ssize_t p = s + len;
        if (char_is(t, p, '_')) p++;
        return LIT(t, p, "tag=") && value_run(t, p + 4, STOP_TAG, gs, ge);
    }
    if (c == '\n') {
        if (ci(t, s + 1, word, len) && dump_tag(t, s + 1 + len, gs, ge)) return 1;
        return ci(t, s + 1, word, 1) && dump_tag(t, s + 2, gs, ge);
    }
    return 0;
}

static int match_from_tag(const Text *t, Py_ssize_t s, Py_ssize_t *gs, Py_ssize_t *ge) {
    return tag_of(t, s, "from", 4, gs, ge);
}

static int match_to_tag(const Text *t, Py_ssize_t s, Py_ssize_t *gs, Py_ssize_t *ge) {
    return tag_of(t, s, "to", 2, gs, ge);
}

/* The end of a word: \b after a word character. */
static inline int word_ends(const Text *t, Py_ssize_t p) {
    return p >= t->n || !is_word(at(t, p));
}

static const char *const METHODS[] = {"INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS",
                                      "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO",
                                      "REFER", "MESSAGE", "UPDATE"};

/* (INVITE|...|UPDATE)\b at p (no name is a prefix of another: at most one applies). */
static int method_word(const Text *t, Py_ssize_t p, Py_ssize_t *gs, Py_ssize_t *ge) {
    for (size_t k = 0; k < sizeof(METHODS) / sizeof(METHODS[0]); k++) {
        Py_ssize_t len = (Py_ssize_t)strlen(METHODS[k]);
        if (lit(t, p, METHODS[k], len) && word_ends(t, p + len)) {
            *gs = p;
            *ge = p + len;
            return 1;
        }
    }
    return 0;
}

/* (?:request[ ]|method=|\nCSeq:[ \t]*\d+[ \t]+|\n)(INVITE|...|UPDATE)\b */
static int match_method(const Text *t, Py_ssize_t s, Py_ssize_t *gs, Py_ssize_t *ge) {
    Py_UCS4 c = at(t, s);
    if (c == 'r') return LIT(t, s, "request ") && method_word(t, s + 8, gs, ge);
    if (c == 'm') return LIT(t, s, "method=") && method_word(t, s + 7, gs, ge);
    if (c != '\n') return 0;
    if (LIT(t, s + 1, "CSeq:")) {
        Py_ssize_t p = s + 6;
        while (is_blank(t, p)) p++;
        Py_ssize_t d = p;
        while (p < t->n && is_digit(at(t, p))) p++;
        if (p > d && is_blank(t, p)) {
            while (is_blank(t, p)) p++;
            if (method_word(t, p, gs, ge)) return 1;
        }
    }
    return method_word(t, s + 1, gs, ge);
}

/* ([1-6]\d\d)\b at p */
static int status_code(const Text *t, Py_ssize_t p, Py_ssize_t *gs, Py_ssize_t *ge) {
    if (p + 3 > t->n) return 0;
    Py_UCS4 c = at(t, p);
    if (c < '1' || c > '6' || !is_digit(at(t, p + 1)) || !is_digit(at(t, p + 2))
        || !word_ends(t, p + 3))
        return 0;
    *gs = p;
    *ge = p + 3;
    return 1;
}

/* (?:repl(?:y|ied) |status=|code=|\nSIP/2\.0 )([1-6]\d\d)\b */
static int match_status(const Text *t, Py_ssize_t s, Py_ssize_t *gs, Py_ssize_t *ge) {
    switch (at(t, s)) {
    case 'r':
        if (!LIT(t, s, "repl")) return 0;
        if (LIT(t, s + 4, "y ")) return status_code(t, s + 6, gs, ge);
        return LIT(t, s + 4, "ied ") && status_code(t, s + 8, gs, ge);
    case 's': return LIT(t, s, "status=") && status_code(t, s + 7, gs, ge);
    case 'c': return LIT(t, s, "code=") && status_code(t, s + 5, gs, ge);
    case '\n': return LIT(t, s + 1, "SIP/2.0 ") && status_code(t, s + 9, gs, ge);
    default: return 0;
    }
}

/* (\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]) at p; each \d{1,3} is followed by a '.' or by
 * nothing, so it takes as many digits as it can (up to 3). */
static int address(const Text *t, Py_ssize_t p, Py_ssize_t *gs, Py_ssize_t *ge) {
    Py_ssize_t q = p;
    int part;
    for (part = 0; part < 4; part++) {
        Py_ssize_t d = q;
        while (q < t->n && q - d < 3 && is_digit(at(t, q))) q++;
        if (q == d) break;
        if (part == 3) {
            *gs = p;
            *ge = q;
            return 1;
        }
        if (!char_is(t, q, '.')) break;
        q++;
    }
    if (!char_is(t, p, '[')) return 0;
    q = p + 1;
    while (q < t->n) {
        Py_UCS4 c = at(t, q);
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
              || c == ':'))
            break;
        q++;
    }
    if (q == p + 1 || !char_is(t, q, ']')) return 0;
    *gs = p;
    *ge = q + 1;
    return 1;
}

/* (?:from[ ]|src_ip=|source[ ]|\nVia:[ \t]*SIP/2\.0/\w+[ \t]+)(address) */
static int match_src_ip(const Text *t, Py_ssize_t s, Py_ssize_t *gs, Py_ssize_t *ge) {
    switch (at(t, s)) {
    case 'f': return LIT(t, s, "from ") && address(t, s + 5, gs, ge);
    case 's':
        if (LIT(t, s, "src_ip=")) return address(t, s + 7, gs, ge);
        return LIT(t, s, "source ") && address(t, s + 7, gs, ge);
    case '\n': {
        if (!LIT(t, s + 1, "Via:")) return 0;
        Py_ssize_t p = s + 5;
        while (is_blank(t, p)) p++;
        if (!LIT(t, p, "SIP/2.0/")) return 0;
        p += 8;
        Py_ssize_t w = p;
        while (p < t->n && is_word(at(t, p))) p++;
        if (p == w || !is_blank(t, p)) return 0;
        while (is_blank(t, p)) p++;
        return address(t, p, gs, ge);
    }
    default: return 0;
    }
}

static const Matcher MATCHERS[N_IDS] = {match_call_id, match_from_tag, match_to_tag,
                                        match_method, match_status, match_src_ip};

/* Which identifiers' matches can start with an ASCII character (bit k: identifier k). */
static unsigned char FIRST[128];

static void init_first(void) {
    FIRST['\n'] = (1 << N_IDS) - 1;
    FIRST['c'] = (1 << CALL_ID) | (1 << STATUS);
    FIRST['C'] = 1 << CALL_ID;
    FIRST['f'] = (1 << FROM_TAG) | (1 << SRC_IP);
    FIRST['t'] = 1 << TO_TAG;
    FIRST['r'] = (1 << METHOD) | (1 << STATUS);
    FIRST['m'] = 1 << METHOD;
    FIRST['s'] = (1 << STATUS) | (1 << SRC_IP);
}

/* The leftmost match of each identifier at or after pos: spans[k] = {start, end} of group 1,
 * or {-1, -1}. */
static void identifiers(const Text *t, Py_ssize_t pos, Py_ssize_t spans[N_IDS][2]) {
    unsigned pending = (1 << N_IDS) - 1;
    for (int k = 0; k < N_IDS; k++) spans[k][0] = spans[k][1] = -1;
    const Py_UCS1 *bytes = t->kind == PyUnicode_1BYTE_KIND ? t->data : NULL;
    for (Py_ssize_t s = pos; s < t->n && pending; s++) {
        if (bytes != NULL) /* the usual case: skip to a possible start */
            while (s < t->n && (bytes[s] >= 128 || !(FIRST[bytes[s]] & pending))) s++;
        if (s == t->n) break;
        Py_UCS4 c = at(t, s);
        if (c >= 128) continue;
        unsigned candidates = FIRST[c] & pending;
        for (int k = 0; candidates; k++, candidates >>= 1) {
            if ((candidates & 1) && MATCHERS[k](t, s, &spans[k][0], &spans[k][1]))
                pending &= ~(1u << k);
        }
    }
}

/* ---- the batch ----------------------------------------------------------------------- */

/* Whether "#015#012" is in the text. */
static int has_escaped_break(const Text *t) {
    if (t->kind == PyUnicode_1BYTE_KIND) {
        const char *d = t->data, *end = d + t->n, *hit;
        for (const char *p = d; (hit = memchr(p, '#', (size_t)(end - p))) != NULL; p = hit + 1)
            if (end - hit >= 8 && memcmp(hit, "#015#012", 8) == 0) return 1;
        return 0;
    }
    for (Py_ssize_t p = 0; p + 8 <= t->n; p++)
        if (at(t, p) == '#' && LIT(t, p, "#015#012")) return 1;
    return 0;
}

static PyObject *key_time, *key_pid, *key_level, *key_module, *key_function;
static PyObject *escaped_break, *crlf;

/* fields[i], made a dict if it is None (borrowed), or NULL with an exception. */
static PyObject *fields_of(PyObject *fields, Py_ssize_t i) {
    PyObject *d = PyList_GET_ITEM(fields, i);
    if (d == Py_None) {
        d = PyDict_New();
        if (d == NULL) return NULL;
        PyList_SetItem(fields, i, d); /* steals d, drops the None; the list holds d */
        return d;
    }
    if (!PyDict_Check(d)) {
        PyErr_Format(PyExc_TypeError, "fields[%zd] is not a dict or None", i);
        return NULL;
    }
    return d;
}

/* The text [s, e) of line: *last (a new reference) again if it is the same text (values
 * repeat from one entry to the next: the second, the pid, the level...), else a new str that
 * becomes *last. */
static PyObject *text_of(PyObject *line, Py_ssize_t s, Py_ssize_t e, PyObject **last) {
    PyObject *prev = *last;
    if (prev != NULL && PyUnicode_GET_LENGTH(prev) == e - s
        && PyUnicode_KIND(prev) == PyUnicode_1BYTE_KIND
        && PyUnicode_KIND(line) == PyUnicode_1BYTE_KIND
        && memcmp(PyUnicode_DATA(prev), (const char *)PyUnicode_DATA(line) + s,
                  (size_t)(e - s)) == 0) {
        Py_INCREF(prev);
        return prev;
    }
    PyObject *text = PyUnicode_Substring(line, s, e);
    if (text == NULL) return NULL;
    Py_INCREF(text);
    Py_XSETREF(*last, text);
    return text;
}

/* d[key] = the text [s, e) of line (through text_of and *last). */
static int set_text(PyObject *d, PyObject *key, PyObject *line, Py_ssize_t s, Py_ssize_t e,
                    PyObject **last) {
    PyObject *value = text_of(line, s, e, last);
    if (value == NULL) return -1;
    int rc = PyDict_SetItem(d, key, value);
    Py_DECREF(value);
    return rc;
}

/* The fields' last values (text_of): the header's, then the identifiers'. */
enum { LAST_TIME, LAST_PID, LAST_LEVEL, LAST_MODULE, LAST_FUNCTION, LAST_IDS };

/* The batch's time texts and what convert made of them (the Python stage's `seen`): texts of
 * one byte a character and at most TIME_TEXT_MAX long in an open-addressing table (found
 * without making a str: the time changes from entry to entry, its text repeats), the others,
 * and new ones once the table is half full, in a dict keyed by the text. */
#define TIME_SLOTS 256
#define TIME_TEXT_MAX 48

typedef struct {
    PyObject *ns; /* what convert gave (a reference), NULL in a free slot */
    Py_ssize_t len;
    unsigned char text[TIME_TEXT_MAX];
} TimeSlot;

typedef struct {
    Py_ssize_t used;
    PyObject *dict;
    TimeSlot slot[TIME_SLOTS];
} Times;

static Times *times_new(void) {
    Times *times = PyMem_Calloc(1, sizeof(Times));
    if (times == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    if ((times->dict = PyDict_New()) == NULL) {
        PyMem_Free(times);
        return NULL;
    }
    return times;
}

static void times_free(Times *times) {
    if (times == NULL) return;
    for (int k = 0; k < TIME_SLOTS; k++) Py_XDECREF(times->slot[k].ns);
    Py_DECREF(times->dict);
    PyMem_Free(times);
}

/* The table's slot of text (len bytes): its own, or the free one it would take; NULL when the
 * table does not take it (too long, or new and the table half full: then it is in the dict). */
static TimeSlot *time_slot(Times *times, const unsigned char *text, Py_ssize_t len) {
    if (len > TIME_TEXT_MAX) return NULL;
    uint32_t hash = 2166136261u; /* FNV-1a */
    for (Py_ssize_t k = 0; k < len; k++) hash = (hash ^ text[k]) * 16777619u;
    for (uint32_t j = hash & (TIME_SLOTS - 1);; j = (j + 1) & (TIME_SLOTS - 1)) {
        TimeSlot *slot = &times->slot[j];
        if (slot->ns == NULL) return times->used < TIME_SLOTS / 2 ? slot : NULL;
        if (slot->len == len && memcmp(slot->text, text, (size_t)len) == 0) return slot;
    }
}

/* stamps[i] = what the time text [0, time_e) of line converts to: as the Python stage does
 * with `seen` (ns = seen.get(text, 0); if ns == 0: ns = seen[text] = convert(text, stamp)),
 * through times. *time_text is the text's str (a reference the caller owns), made here (through
 * text_of and *last_time) when it is NULL and a str is needed. 0, or 1 if the time does not
 * convert (stamps[i] kept), or -1 with an exception. */
static int convert_time(Times *times, PyObject *line, Py_ssize_t time_e, PyObject **time_text,
                        PyObject **last_time, PyObject *stamps, Py_ssize_t i,
                        PyObject *convert) {
    TimeSlot *slot = PyUnicode_KIND(line) == PyUnicode_1BYTE_KIND
        ? time_slot(times, PyUnicode_1BYTE_DATA(line), time_e) : NULL;
    PyObject *ns; /* borrowed */
    if (slot != NULL) {
        ns = slot->ns;
    } else {
        if (*time_text == NULL && (*time_text = text_of(line, 0, time_e, last_time)) == NULL)
            return -1;
        ns = PyDict_GetItemWithError(times->dict, *time_text);
        if (ns == NULL && PyErr_Occurred()) return -1;
    }
    int again = ns == NULL;
    if (!again && PyLong_Check(ns)) {
        int truth = PyObject_IsTrue(ns);
        if (truth < 0) return -1;
        again = !truth;
    }
    if (again) {
        if (*time_text == NULL && (*time_text = text_of(line, 0, time_e, last_time)) == NULL)
            return -1;
        PyObject *fresh = PyObject_CallFunctionObjArgs(convert, *time_text,
                                                       PyList_GET_ITEM(stamps, i), NULL);
        if (fresh == NULL) return -1;
        if (slot != NULL) {
            if (slot->ns == NULL) {
                times->used++;
                slot->len = time_e;
                memcpy(slot->text, PyUnicode_1BYTE_DATA(line), (size_t)time_e);
            }
            Py_XSETREF(slot->ns, fresh); /* the table holds it */
        } else {
            int rc = PyDict_SetItem(times->dict, *time_text, fresh);
            Py_DECREF(fresh); /* the dict holds it */
            if (rc < 0) return -1;
        }
        ns = fresh;
    }
    if (ns == Py_None) return 1;
    Py_INCREF(ns);
    PyList_SetItem(stamps, i, ns); /* steals ns, drops the old stamp */
    return 0;
}

/* The header's fields into fields[i]; its time converted into stamps[i] (convert_time).
 * 1 if the time does not convert. */
static int header_fields(PyObject *line, const Header *h, PyObject *fields, PyObject *stamps,
                         Py_ssize_t i, Times *times, PyObject *convert, PyObject **last) {
    PyObject *d = fields_of(fields, i);
    if (d == NULL) return -1;
    PyObject *time_text = text_of(line, 0, h->time_e, &last[LAST_TIME]);
    if (time_text == NULL) return -1;
    int rc = -1;
    if (PyDict_SetItem(d, key_time, time_text) < 0
        || set_text(d, key_pid, line, h->pid_s, h->pid_e, &last[LAST_PID]) < 0
        || set_text(d, key_level, line, h->level_s, h->level_e, &last[LAST_LEVEL]) < 0
        || (h->module_s >= 0
            && (set_text(d, key_module, line, h->module_s, h->module_e,
                         &last[LAST_MODULE]) < 0
                || set_text(d, key_function, line, h->module_e + 1, h->function_e,
                            &last[LAST_FUNCTION]) < 0)))
        goto done;
    rc = convert_time(times, line, h->time_e, &time_text, &last[LAST_TIME], stamps, i, convert);
done:
    Py_DECREF(time_text);
    return rc;
}

/* lines[i] (borrowed) with its "#015#012" made "\r\n" (lines[i] replaced), and its text;
 * -1 with an exception if it is not a str. */
static int entry(PyObject *lines, Py_ssize_t i, PyObject **line_out, Text *t) {
    PyObject *line = PyList_GET_ITEM(lines, i);
    if (!PyUnicode_Check(line)) {
        PyErr_Format(PyExc_TypeError, "lines[%zd] is not a str", i);
        return -1;
    }
    *t = (Text){PyUnicode_KIND(line), PyUnicode_DATA(line), PyUnicode_GET_LENGTH(line)};
    if (has_escaped_break(t)) {
        PyObject *replaced = PyUnicode_Replace(line, escaped_break, crlf, -1);
        if (replaced == NULL) return -1;
        PyList_SetItem(lines, i, replaced); /* steals replaced, drops the old line */
        line = replaced;
        *t = (Text){PyUnicode_KIND(line), PyUnicode_DATA(line), PyUnicode_GET_LENGTH(line)};
    }
    *line_out = line;
    return 0;
}

/* Entry i read: *line (borrowed) as entry() makes it, its header into h, the identifiers'
 * spans after it (from 0 without one); 1 with a header, 0 without, -1 with an exception. */
static int read_entry(PyObject *lines, Py_ssize_t i, PyObject **line, Header *h,
                      Py_ssize_t ids[N_IDS][2]) {
    Text t;
    if (entry(lines, i, line, &t) < 0) return -1;
    int has_header = header(&t, h);
    identifiers(&t, has_header ? h->end : 0, ids);
    return has_header;
}

static PyObject *parse(PyObject *self, PyObject *args) {
    PyObject *lines, *fields, *stamps, *convert;
    if (!PyArg_ParseTuple(args, "O!O!O!O:parse", &PyList_Type, &lines, &PyList_Type, &fields,
                          &PyList_Type, &stamps, &convert))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(lines);
    if (PyList_GET_SIZE(fields) != n || PyList_GET_SIZE(stamps) != n) {
        PyErr_SetString(PyExc_ValueError, "lines, fields and stamps differ in length");
        return NULL;
    }
    PyObject *last[LAST_IDS + N_IDS] = {NULL};
    Times *times = times_new();
    if (times == NULL) return NULL;
    Py_ssize_t no_header = 0, unparsable = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line;
        Header h;
        Py_ssize_t spans[N_IDS][2];
        int has_header = read_entry(lines, i, &line, &h, spans);
        if (has_header < 0) goto error;
        if (has_header) {
            int rc = header_fields(line, &h, fields, stamps, i, times, convert, last);
            if (rc < 0) goto error;
            unparsable += rc;
        } else {
            no_header++;
        }
        for (int k = 0; k < N_IDS; k++) {
            if (spans[k][0] < 0) continue;
            PyObject *d = fields_of(fields, i);
            if (d == NULL || set_text(d, id_keys[k], line, spans[k][0], spans[k][1],
                                      &last[LAST_IDS + k]) < 0)
                goto error;
        }
    }
    times_free(times);
    for (size_t k = 0; k < sizeof(last) / sizeof(last[0]); k++) Py_XDECREF(last[k]);
    return Py_BuildValue("nn", no_header, unparsable);
error:
    times_free(times);
    for (size_t k = 0; k < sizeof(last) / sizeof(last[0]); k++) Py_XDECREF(last[k]);
    return NULL;
}

/* ---- the fused step: parse, then labels and structured_metadata, without fields ---------- */

/* The fields the stage makes, by number (what opensips.FIELDS lists): the header's, in the
 * order of LAST_TIME ... LAST_FUNCTION, then the identifiers' (LAST_IDS + k). */
#define N_FIELDS (LAST_IDS + N_IDS)

/* Where each field is in the entry: [spans[f][0], spans[f][1]), or -1 when it is absent. */
static void field_spans(int has_header, const Header *h, Py_ssize_t ids[N_IDS][2],
                        Py_ssize_t spans[N_FIELDS][2]) {
    for (int f = 0; f < LAST_IDS; f++) spans[f][0] = spans[f][1] = -1;
    if (has_header) {
        spans[LAST_TIME][0] = 0;
        spans[LAST_TIME][1] = h->time_e;
        spans[LAST_PID][0] = h->pid_s;
        spans[LAST_PID][1] = h->pid_e;
        spans[LAST_LEVEL][0] = h->level_s;
        spans[LAST_LEVEL][1] = h->level_e;
        if (h->module_s >= 0) {
            spans[LAST_MODULE][0] = h->module_s;
            spans[LAST_MODULE][1] = h->module_e;
            spans[LAST_FUNCTION][0] = h->module_e + 1;
            spans[LAST_FUNCTION][1] = h->function_e;
        }
    }
    for (int k = 0; k < N_IDS; k++) {
        spans[LAST_IDS + k][0] = ids[k][0];
        spans[LAST_IDS + k][1] = ids[k][1];
    }
}

/* One attaching stage's (name, field number) pairs (the names borrowed from the plan tuple,
 * which the caller holds), and what it keeps from the entry before: kept[k], a new reference
 * or NULL (labels: the value of pair k; metadata: the (name, value) tuple of pair k). */
typedef struct {
    Py_ssize_t n;
    PyObject **names;
    int *field;
    PyObject **kept;
} Plan;

static void plan_free(Plan *plan) {
    if (plan->kept != NULL)
        for (Py_ssize_t k = 0; k < plan->n; k++) Py_XDECREF(plan->kept[k]);
    PyMem_Free(plan->names);
    PyMem_Free(plan->field);
    PyMem_Free(plan->kept);
}

/* plan from a tuple of (name: str, field: int in [0, N_FIELDS)); -1 with an exception. */
static int plan_read(PyObject *tuple, Plan *plan) {
    Py_ssize_t n = PyTuple_GET_SIZE(tuple), size = n ? n : 1;
    plan->n = n;
    plan->names = PyMem_Calloc((size_t)size, sizeof(PyObject *));
    plan->field = PyMem_Calloc((size_t)size, sizeof(int));
    plan->kept = PyMem_Calloc((size_t)size, sizeof(PyObject *));
    if (plan->names == NULL || plan->field == NULL || plan->kept == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *pair = PyTuple_GET_ITEM(tuple, k);
        long field;
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2
            || !PyUnicode_Check(PyTuple_GET_ITEM(pair, 0))
            || !PyLong_Check(PyTuple_GET_ITEM(pair, 1))
            || (field = PyLong_AsLong(PyTuple_GET_ITEM(pair, 1))) < 0 || field >= N_FIELDS) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError,
                                "a plan is (name, field number) pairs, of fields the stage makes");
            return -1;
        }
        plan->names[k] = PyTuple_GET_ITEM(pair, 0);
        plan->field[k] = (int)field;
    }
    return 0;
}

/* The label pairs of an entry whose field values are values[] (new reference): the shared
 * tuple of the entry before when its values are the same objects (plan->kept, with *last the
 * tuple), else cache[values as a tuple, None for absent], made on a miss (the present values'
 * pairs in the plan's order, which is by name; the cache cleared first when it holds limit). */
static PyObject *label_pairs(Plan *plan, PyObject *const values[N_FIELDS], PyObject **last,
                             PyObject *cache, Py_ssize_t limit) {
    int same = *last != NULL;
    for (Py_ssize_t k = 0; same && k < plan->n; k++)
        same = values[plan->field[k]] == plan->kept[k];
    if (same) {
        Py_INCREF(*last);
        return *last;
    }
    PyObject *key = PyTuple_New(plan->n), *found = NULL;
    if (key == NULL) return NULL;
    Py_ssize_t present = 0;
    for (Py_ssize_t k = 0; k < plan->n; k++) {
        PyObject *value = values[plan->field[k]];
        present += value != NULL;
        if (value == NULL) value = Py_None;
        Py_INCREF(value);
        PyTuple_SET_ITEM(key, k, value);
    }
    found = PyDict_GetItemWithError(cache, key); /* borrowed */
    if (found != NULL) {
        Py_INCREF(found);
    } else {
        if (PyErr_Occurred() || (found = PyTuple_New(present)) == NULL) goto error;
        for (Py_ssize_t k = 0, j = 0; k < plan->n; k++) {
            PyObject *value = values[plan->field[k]], *pair;
            if (value == NULL) continue;
            if ((pair = PyTuple_Pack(2, plan->names[k], value)) == NULL) goto error;
            PyTuple_SET_ITEM(found, j++, pair);
        }
        if (PyDict_GET_SIZE(cache) >= limit) PyDict_Clear(cache);
        if (PyDict_SetItem(cache, key, found) < 0) goto error;
    }
    Py_DECREF(key);
    for (Py_ssize_t k = 0; k < plan->n; k++) {
        Py_XINCREF(values[plan->field[k]]);
        Py_XSETREF(plan->kept[k], values[plan->field[k]]);
    }
    Py_INCREF(found);
    Py_XSETREF(*last, found);
    return found;
error:
    Py_DECREF(key);
    Py_XDECREF(found);
    return NULL;
}

/* The metadata pairs of an entry whose field values are values[] (new reference), in the
 * plan's order, present values only; a pair is the entry before's (plan->kept) when its value
 * is the same object. */
static PyObject *metadata_pairs(Plan *plan, PyObject *const values[N_FIELDS]) {
    Py_ssize_t present = 0;
    for (Py_ssize_t k = 0; k < plan->n; k++) present += values[plan->field[k]] != NULL;
    PyObject *found = PyTuple_New(present);
    if (found == NULL) return NULL;
    for (Py_ssize_t k = 0, j = 0; k < plan->n; k++) {
        PyObject *value = values[plan->field[k]], *pair = plan->kept[k];
        if (value == NULL) continue;
        if (pair == NULL || PyTuple_GET_ITEM(pair, 1) != value) {
            if ((pair = PyTuple_Pack(2, plan->names[k], value)) == NULL) {
                Py_DECREF(found);
                return NULL;
            }
            Py_XSETREF(plan->kept[k], pair);
        }
        Py_INCREF(pair);
        PyTuple_SET_ITEM(found, j++, pair);
    }
    return found;
}

static PyObject *parse_attach(PyObject *self, PyObject *args) {
    PyObject *lines, *stamps, *convert, *label_plan, *labels, *cache, *metadata_plan, *metadata;
    PyObject *merge;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "O!O!OO!O!O!nO!O!O:parse_attach", &PyList_Type, &lines,
                          &PyList_Type, &stamps, &convert, &PyTuple_Type, &label_plan,
                          &PyList_Type, &labels, &PyDict_Type, &cache, &limit, &PyTuple_Type,
                          &metadata_plan, &PyList_Type, &metadata, &merge))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(lines);
    if (PyList_GET_SIZE(stamps) != n || PyList_GET_SIZE(labels) != n
        || PyList_GET_SIZE(metadata) != n) {
        PyErr_SetString(PyExc_ValueError, "lines, stamps, labels and metadata differ in length");
        return NULL;
    }
    Plan lp = {0}, mp = {0};
    PyObject *last[N_FIELDS] = {NULL}, *last_labels = NULL;
    Times *times = NULL;
    PyObject *values[N_FIELDS] = {NULL};
    if (plan_read(label_plan, &lp) < 0 || plan_read(metadata_plan, &mp) < 0
        || (times = times_new()) == NULL)
        goto error;
    unsigned needed = 0; /* the fields the plans read */
    for (Py_ssize_t k = 0; k < lp.n; k++) needed |= 1u << lp.field[k];
    for (Py_ssize_t k = 0; k < mp.n; k++) needed |= 1u << mp.field[k];
    Py_ssize_t no_header = 0, unparsable = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line;
        Header h;
        Py_ssize_t ids[N_IDS][2], spans[N_FIELDS][2];
        int has_header = read_entry(lines, i, &line, &h, ids);
        if (has_header < 0) goto error;
        field_spans(has_header, &h, ids, spans);
        for (int f = 0; f < N_FIELDS; f++) {
            /* a field the plans read is taken when present and not empty */
            if (spans[f][0] < 0 || spans[f][0] == spans[f][1] || !((needed >> f) & 1))
                continue;
            values[f] = text_of(line, spans[f][0], spans[f][1], &last[f]);
            if (values[f] == NULL) goto error;
        }
        if (has_header) {
            /* values[LAST_TIME]: made here if it was not (then no plan reads it) */
            int rc = convert_time(times, line, h.time_e, &values[LAST_TIME], &last[LAST_TIME],
                                  stamps, i, convert);
            if (rc < 0) goto error;
            unparsable += rc;
        } else {
            no_header++;
        }
        if (lp.n) {
            PyObject *found = label_pairs(&lp, values, &last_labels, cache, limit);
            if (found == NULL) goto error;
            int rc = PyTuple_GET_SIZE(found) ? store(labels, i, found, merge, 1) : 0;
            Py_DECREF(found);
            if (rc < 0) goto error;
        }
        if (mp.n) {
            PyObject *found = metadata_pairs(&mp, values);
            if (found == NULL) goto error;
            int rc = PyTuple_GET_SIZE(found) ? store(metadata, i, found, merge, 0) : 0;
            Py_DECREF(found);
            if (rc < 0) goto error;
        }
        for (int f = 0; f < N_FIELDS; f++) Py_CLEAR(values[f]);
    }
    times_free(times);
    plan_free(&lp);
    plan_free(&mp);
    Py_XDECREF(last_labels);
    for (int f = 0; f < N_FIELDS; f++) Py_XDECREF(last[f]);
    return Py_BuildValue("nn", no_header, unparsable);
error:
    times_free(times);
    plan_free(&lp);
    plan_free(&mp);
    Py_XDECREF(last_labels);
    for (int f = 0; f < N_FIELDS; f++) {
        Py_XDECREF(last[f]);
        Py_XDECREF(values[f]);
    }
    return NULL;
}

static PyMethodDef methods[] = {
    {"parse", parse, METH_VARARGS,
     "parse(lines, fields, stamps, convert) -> (no_header, unparsable)\n\n"
     "The opensips stage on one batch's lists, in place (module logcap.pipeline.stages."
     "opensips: OpensipsStage)."},
    {"parse_attach", parse_attach, METH_VARARGS,
     "parse_attach(lines, stamps, convert, label_plan, labels, cache, limit, metadata_plan, "
     "metadata, merge) -> (no_header, unparsable)\n\n"
     "The opensips stage and the labels and structured_metadata stages after it, fused "
     "(module logcap.pipeline.stages.fused)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "logcap.pipeline.stages._opensips",
    "The opensips stage's parsing, compiled (the Python stage is the specification).", -1,
    methods, NULL, NULL, NULL, NULL,
};

static PyObject *intern(const char *s) { return PyUnicode_InternFromString(s); }

PyMODINIT_FUNC PyInit__opensips(void) {
    init_first();
    init_stops();
    if (!(key_time = intern("time")) || !(key_pid = intern("pid"))
        || !(key_level = intern("level")) || !(key_module = intern("module"))
        || !(key_function = intern("function")) || !(escaped_break = intern("#015#012"))
        || !(crlf = intern("\r\n")))
        return NULL;
    for (int k = 0; k < N_IDS; k++)
        if (!(id_keys[k] = intern(ID_NAMES[k]))) return NULL;
    return PyModule_Create(&module);
}
