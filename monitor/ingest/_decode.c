/* The batch decoder in C (monitor/ingest/events.py, decode_batch): a parser of plain messages, the two counts behind
 * msgspec's path's repeated-key check, and the completion of a batch of plain inference events.
 *
 *   plain_events(raws, template, kinds, max_bytes)
 *                              each plain message's event as msgspec decodes it, None for any other message
 *
 * Where this module was not built, msgspec decodes every message. Each of the others equals its Python twin in
 * events.py, which runs then:
 *
 *   key_colons(raws)           == _key_colons_twin(raws), the colons ending a key, message by message
 *   set_fields(events, unset)  == _set_fields_twin(events, unset), the fields of the events not `unset`
 *   complete(events, latest_ms, unset, inference)
 *                              == _complete_batch_twin(events, latest_ms, unset, inference), the same fields set
 *   field(events, name)        == list(map(operator.attrgetter(name), events)), read from the slots
 *   columns(events, paths)     == _columns_twin(events, paths), several fields or entries, in one pass
 *   floats(values, unset)      numbers, None or unset as packed float64s (None for other values: numpy converts)
 *
 * Nothing here judges an event alone: a message the parser does not take, a count that is off, or a batch that is
 * not plainly valid, only sends the message or the batch down the message-by-message path, where every event is
 * judged.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

/* key_colons(raws: list[bytes]) -> int | None
 *
 * The colons ending a key in each message read without white space (space, tab, LF, CR): a quote-colon whose quote
 * is not escaped (one backslash before it). None when an escaped backslash may end a string (a backslash, a
 * backslash, a quote), which would hide a key's closing quote. Colons and quotes are found with memchr.
 */
static inline int
is_space(unsigned char byte)
{
    return byte == ' ' || byte == '\t' || byte == '\n' || byte == '\r';
}

/* The last byte other than white space before `at` in data (0 if none). */
static inline unsigned char
byte_before(const unsigned char *data, const unsigned char **at)
{
    const unsigned char *p = *at;
    while (p > data && is_space(p[-1])) {
        p--;
    }
    *at = p > data ? p - 1 : data;
    return p > data ? p[-1] : 0;
}

/* A backslash, a backslash and a quote, white space left out: a string that may end in an escaped backslash. */
static int
escaped_backslash_quote(const unsigned char *data, Py_ssize_t size)
{
    const unsigned char *end = data + size, *quote = data;
    while ((quote = memchr(quote, '"', end - quote)) != NULL) {
        const unsigned char *at = quote;
        if (byte_before(data, &at) == '\\' && byte_before(data, &at) == '\\') {
            return 1;
        }
        quote++;
    }
    return 0;
}

static PyObject *
key_colons(PyObject *module, PyObject *raws)
{
    if (!PyList_Check(raws)) {
        PyErr_SetString(PyExc_TypeError, "key_colons() takes a list of bytes");
        return NULL;
    }
    Py_ssize_t n_keys = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(raws); i++) {
        PyObject *raw = PyList_GET_ITEM(raws, i);
        if (!PyBytes_Check(raw)) {
            PyErr_SetString(PyExc_TypeError, "key_colons() takes a list of bytes");
            return NULL;
        }
        const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(raw);
        Py_ssize_t size = PyBytes_GET_SIZE(raw);
        int escapes = memchr(data, '\\', size) != NULL;
        if (escapes && escaped_backslash_quote(data, size)) {
            Py_RETURN_NONE;
        }
        const unsigned char *end = data + size, *colon = data;
        while ((colon = memchr(colon, ':', end - colon)) != NULL) {
            const unsigned char *at = colon;
            if (byte_before(data, &at) == '"' && !(escapes && byte_before(data, &at) == '\\')) {
                n_keys++;
            }
            colon++;
        }
    }
    return PyLong_FromSsize_t(n_keys);
}

/* Each field of instances of type `of`: every writable object slot of its own class and its bases (heap types: a
 * msgspec Struct's fields are such slots), as `member`. */
#define FOR_EACH_FIELD(of, member)                                                                              \
    for (PyTypeObject *owner_ = (of); owner_ != NULL; owner_ = owner_->tp_base)                                   \
        for (PyMemberDef *member = (owner_->tp_flags & Py_TPFLAGS_HEAPTYPE) ? owner_->tp_members : NULL;          \
             member != NULL && member->name != NULL; member++)                                                    \
            if (member->type == T_OBJECT_EX && !(member->flags & READONLY))

#define FIELD(event, offset) (*(PyObject **)((char *)(event) + (offset)))

/* The slot of field `name` in instances of `type`, or -1. */
static Py_ssize_t
slot_of(PyTypeObject *type, const char *name)
{
    FOR_EACH_FIELD(type, member) {
        if (strcmp(member->name, name) == 0) {
            return member->offset;
        }
    }
    return -1;
}

/* set_fields(events: list, unset) -> int
 *
 * How many fields of the events (instances of slotted classes such as msgspec Structs: every object slot of their
 * own classes) hold something other than `unset`.
 */
static PyObject *
set_fields(PyObject *module, PyObject *const *args, Py_ssize_t n_args)
{
    if (n_args != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "set_fields() takes a list of events and the unset marker");
        return NULL;
    }
    PyObject *events = args[0], *unset = args[1];
    Py_ssize_t n_set = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(events); i++) {
        PyObject *event = PyList_GET_ITEM(events, i);
        FOR_EACH_FIELD(Py_TYPE(event), member) {
            PyObject *value = FIELD(event, member->offset);
            n_set += value != NULL && value != unset;
        }
    }
    return PyLong_FromSsize_t(n_set);
}

/* complete(events, latest_ms, unset, inference) -> bool
 *
 * Whether every event is a plain inference event: "type" unset, null or `inference`; "request_id" and "model" str
 * ("model" not empty);
 * "timestamp" all datetimes with an offset, or all numbers (epoch seconds), from 2000 on and before 1e11 s, none
 * later than `latest_ms`. If so, each event's "type" is set to `inference` and its "timestamp_ms" to its
 * timestamp in epoch milliseconds, computed as datetime.timestamp() * 1000.0 computes it; if not, nothing is set.
 * A datetime after 2255 (2**53 microseconds) is not plain here, though valid: its batch is completed event by event.
 */
#define MIN_EPOCH_SECONDS 946684800.0
#define MAX_EPOCH_SECONDS 1e11

/* Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t
days_from_civil(int64_t year, int64_t month, int64_t day)
{
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t year_of_era = year - era * 400;
    int64_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}


/* An aware datetime's epoch seconds, as datetime.timestamp() gives them; -1 with no error if it has no offset or is
 * 2**53 microseconds or more from the epoch. */
static int
datetime_seconds(PyObject *timestamp, PyObject **last_tzinfo, int64_t *last_offset_us, double *seconds)
{
    PyObject *tzinfo = PyDateTime_DATE_GET_TZINFO(timestamp);
    if (tzinfo == Py_None) {
        return -1;
    }
    if (tzinfo != *last_tzinfo) {
        PyObject *offset = PyObject_CallMethod(tzinfo, "utcoffset", "O", timestamp);
        if (offset == NULL) {
            PyErr_Clear();
            return -1;
        }
        if (!PyDelta_Check(offset)) {
            Py_DECREF(offset);
            return -1;
        }
        *last_offset_us = ((int64_t)PyDateTime_DELTA_GET_DAYS(offset) * 86400 + PyDateTime_DELTA_GET_SECONDS(offset))
                              * 1000000 + PyDateTime_DELTA_GET_MICROSECONDS(offset);
        *last_tzinfo = tzinfo; /* borrowed: the datetime holds it for the whole call */
        Py_DECREF(offset);
    }
    int64_t days = days_from_civil(PyDateTime_GET_YEAR(timestamp), PyDateTime_GET_MONTH(timestamp),
                                   PyDateTime_GET_DAY(timestamp));
    int64_t local_us = ((days * 24 + PyDateTime_DATE_GET_HOUR(timestamp)) * 60 + PyDateTime_DATE_GET_MINUTE(timestamp))
                           * 60 + PyDateTime_DATE_GET_SECOND(timestamp);
    local_us = local_us * 1000000 + PyDateTime_DATE_GET_MICROSECOND(timestamp);
    int64_t epoch_us = local_us - *last_offset_us;
    if (epoch_us >= ((int64_t)1 << 53) || epoch_us <= -((int64_t)1 << 53)) {
        return -1; /* after 2255: Python's division rounds once where this would twice; the batch goes event by event */
    }
    *seconds = (double)epoch_us / 1e6; /* both exact as doubles, one rounding: Python's int / int */
    return 0;
}

static PyObject *
complete(PyObject *module, PyObject *const *args, Py_ssize_t n_args)
{
    if (n_args != 4 || !PyList_Check(args[0]) || !PyFloat_Check(args[1]) || !PyUnicode_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "complete(events: list, latest_ms: float, unset, inference: str)");
        return NULL;
    }
    PyObject *events = args[0], *unset = args[2], *inference = args[3];
    double latest_ms = PyFloat_AS_DOUBLE(args[1]);
    Py_ssize_t n = PyList_GET_SIZE(events);
    if (n == 0) {
        Py_RETURN_FALSE;
    }
    PyTypeObject *type = Py_TYPE(PyList_GET_ITEM(events, 0));
    Py_ssize_t kind_at = slot_of(type, "type"), id_at = slot_of(type, "request_id"), model_at = slot_of(type, "model");
    Py_ssize_t timestamp_at = slot_of(type, "timestamp"), ms_at = slot_of(type, "timestamp_ms");
    if (kind_at < 0 || id_at < 0 || model_at < 0 || timestamp_at < 0 || ms_at < 0) {
        Py_RETURN_FALSE;
    }
    double *timestamps_ms = PyMem_Malloc(n * sizeof(double));
    if (timestamps_ms == NULL) {
        return PyErr_NoMemory();
    }
    PyObject *last_tzinfo = NULL;
    int64_t last_offset_us = 0;
    int dated = -1; /* 1: datetimes, 0: numbers, -1: not known yet */
    int plain = 1;
    for (Py_ssize_t i = 0; plain && i < n; i++) {
        PyObject *event = PyList_GET_ITEM(events, i);
        if (Py_TYPE(event) != type) {
            plain = 0;
            break;
        }
        PyObject *kind = FIELD(event, kind_at), *timestamp = FIELD(event, timestamp_at);
        if (kind == NULL || !(kind == unset || kind == Py_None || (PyUnicode_Check(kind) && PyUnicode_Compare(kind, inference) == 0))) {
            plain = 0;
            break;
        }
        PyObject *id = FIELD(event, id_at), *model = FIELD(event, model_at);
        if (id == NULL || model == NULL || !PyUnicode_CheckExact(id) || !PyUnicode_CheckExact(model) || timestamp == NULL
            || PyUnicode_GET_LENGTH(model) == 0) { /* a model named "" is no model: completed alone, missing */
            plain = 0;
            break;
        }
        double seconds;
        int is_datetime = PyDateTime_CheckExact(timestamp);
        if (is_datetime) {
            plain = datetime_seconds(timestamp, &last_tzinfo, &last_offset_us, &seconds) == 0;
        } else if (PyLong_CheckExact(timestamp)) {
            seconds = PyLong_AsDouble(timestamp); /* within 2**53: exact */
            plain = !(seconds == -1.0 && PyErr_Occurred());
        } else if (PyFloat_CheckExact(timestamp)) {
            seconds = PyFloat_AS_DOUBLE(timestamp);
        } else {
            plain = 0;
        }
        if (!plain || (dated >= 0 && dated != is_datetime)) {
            plain = 0;
            break;
        }
        dated = is_datetime;
        if (!(seconds >= MIN_EPOCH_SECONDS && seconds < MAX_EPOCH_SECONDS)) {
            plain = 0;
            break;
        }
        timestamps_ms[i] = seconds * 1000.0;
        if (timestamps_ms[i] > latest_ms) {
            plain = 0;
        }
    }
    PyErr_Clear(); /* a failed conversion only means "not plain" */
    for (Py_ssize_t i = 0; plain && i < n; i++) {
        PyObject *event = PyList_GET_ITEM(events, i), *ms = PyFloat_FromDouble(timestamps_ms[i]);
        if (ms == NULL) {
            PyMem_Free(timestamps_ms);
            return NULL;
        }
        PyObject *old_kind = FIELD(event, kind_at), *old_ms = FIELD(event, ms_at);
        Py_INCREF(inference);
        FIELD(event, kind_at) = inference;
        FIELD(event, ms_at) = ms;
        Py_XDECREF(old_kind);
        Py_XDECREF(old_ms);
    }
    PyMem_Free(timestamps_ms);
    return PyBool_FromLong(plain);
}

/* What reads one field from event after event: its slot, found once per class of the events. */
typedef struct {
    const char *utf8; /* the field's name */
    PyTypeObject *type; /* the class the slot was last found for */
    Py_ssize_t offset;
} FieldReader;

/* The event's field (a new reference), from its slot, else by getattr (NULL with its error if it raises). */
static PyObject *
read_slot(FieldReader *reader, PyObject *event, PyObject *name)
{
    if (Py_TYPE(event) != reader->type) {
        reader->type = Py_TYPE(event);
        reader->offset = slot_of(reader->type, reader->utf8);
    }
    PyObject *value;
    if (reader->offset >= 0 && (value = FIELD(event, reader->offset)) != NULL) {
        Py_INCREF(value);
        return value;
    }
    return PyObject_GetAttr(event, name);
}

/* One column read from event after event: a field, and with a `key` (not NULL) the field's value at `key` where it
 * is a dict (exactly, as in the twin: a subclass may redefine its look-ups; else None). */
typedef struct {
    FieldReader reader;
    PyObject *name;
    PyObject *key;
    PyObject *values; /* the list being filled */
} Column;

/* The value of `column` for `event` (a new reference), or NULL with an error. */
static PyObject *
read_column(Column *column, PyObject *event)
{
    PyObject *value = read_slot(&column->reader, event, column->name);
    if (value != NULL && column->key != NULL) {
        PyObject *entry = PyDict_CheckExact(value) ? PyDict_GetItemWithError(value, column->key) : NULL;
        entry = entry == NULL && !PyErr_Occurred() ? Py_None : entry;
        Py_XINCREF(entry);
        Py_SETREF(value, entry); /* NULL on an error */
    }
    return value;
}

/* The `n` columns' lists, filled in one pass over the events (each event is visited once, while its memory is at
 * hand); NULL with an error, the lists then freed. */
static int
read_columns(PyObject *events, Column *columns, Py_ssize_t n)
{
    Py_ssize_t n_events = PyList_GET_SIZE(events);
    for (Py_ssize_t j = 0; j < n; j++) {
        columns[j].values = NULL;
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        columns[j].reader = (FieldReader){PyUnicode_AsUTF8(columns[j].name), NULL, -1};
        if (columns[j].reader.utf8 == NULL || (columns[j].values = PyList_New(n_events)) == NULL) {
            goto failed;
        }
    }
    /* getattr may run code that changes the list: each event is held while it is read, the size checked after */
    for (Py_ssize_t i = 0;; i++) {
        if (PyList_GET_SIZE(events) != n_events) {
            PyErr_SetString(PyExc_RuntimeError, "the events changed size during the read");
            goto failed;
        }
        if (i == n_events) {
            return 0;
        }
        PyObject *event = PyList_GET_ITEM(events, i);
        Py_INCREF(event);
        for (Py_ssize_t j = 0; j < n; j++) {
            PyObject *value = read_column(&columns[j], event);
            if (value == NULL) {
                Py_DECREF(event);
                goto failed;
            }
            PyList_SET_ITEM(columns[j].values, i, value);
        }
        Py_DECREF(event);
    }
failed:
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_CLEAR(columns[j].values);
    }
    return -1;
}

/* field(events, name) -> list
 *
 * Each event's field `name`, as getattr reads it: from the instance's slot, found once per class of the events (a
 * few dozen nanoseconds less than getattr's lookup, per value). An object whose class has no such slot is read with
 * getattr (which raises as it would).
 */
static PyObject *
field(PyObject *module, PyObject *const *args, Py_ssize_t n_args)
{
    if (n_args != 2 || !PyList_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "field(events: list, name: str)");
        return NULL;
    }
    Column column = {.name = args[1], .key = NULL};
    return read_columns(args[0], &column, 1) < 0 ? NULL : column.values;
}

/* columns(events, paths) -> tuple[list, ...]
 *
 * For each path of `paths`, a (name, key) pair, each event's field `name` as field() reads it (key None), or the
 * field's value at `key` where the field is a dict (a mapping such as "features"), else None (None, unset, no such
 * key): all read in one pass over the events. A batch's dozen fields read this way
 * cost about half what a dozen passes do (the events no longer in the cache by the next pass).
 */
static PyObject *
columns(PyObject *module, PyObject *const *args, Py_ssize_t n_args)
{
    if (n_args != 2 || !PyList_Check(args[0]) || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "columns(events: list, paths: tuple[tuple[str, str | None], ...])");
        return NULL;
    }
    PyObject *paths = args[1];
    Py_ssize_t n = PyTuple_GET_SIZE(paths);
    Column *read = PyMem_Calloc(n > 0 ? n : 1, sizeof(Column));
    if (read == NULL) {
        return PyErr_NoMemory();
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *path = PyTuple_GET_ITEM(paths, j);
        if (!PyTuple_Check(path) || PyTuple_GET_SIZE(path) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(path, 0))) {
            PyMem_Free(read);
            PyErr_SetString(PyExc_TypeError, "columns: each path is a (name, key or None) pair");
            return NULL;
        }
        PyObject *key = PyTuple_GET_ITEM(path, 1);
        read[j] = (Column){.name = PyTuple_GET_ITEM(path, 0), .key = key == Py_None ? NULL : key};
    }
    PyObject *result = NULL;
    if (read_columns(args[0], read, n) == 0 && (result = PyTuple_New(n)) != NULL) {
        for (Py_ssize_t j = 0; j < n; j++) {
            PyTuple_SET_ITEM(result, j, read[j].values); /* steals */
        }
    } else if (result == NULL) {
        for (Py_ssize_t j = 0; j < n; j++) {
            Py_XDECREF(read[j].values);
        }
    }
    PyMem_Free(read);
    return result;
}

/* floats(values, unset) -> bytearray | None
 *
 * The values as packed float64s, as numpy converts numbers (float, int and bool, ints as float() rounds them),
 * None and `unset` as NaN; None if any other value is among them (numpy then says what it makes of them).
 */
static PyObject *
floats(PyObject *module, PyObject *const *args, Py_ssize_t n_args)
{
    if (n_args != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "floats(values: list, unset)");
        return NULL;
    }
    PyObject *values = args[0], *unset = args[1];
    Py_ssize_t n = PyList_GET_SIZE(values);
    PyObject *packed = PyByteArray_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(double));
    if (packed == NULL) {
        return NULL;
    }
    double *out = (double *)PyByteArray_AS_STRING(packed);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = PyList_GET_ITEM(values, i);
        if (PyFloat_Check(value)) {
            out[i] = PyFloat_AS_DOUBLE(value);
        } else if (value == Py_None || value == unset) {
            out[i] = Py_NAN;
        } else if (PyLong_Check(value) && !((out[i] = PyLong_AsDouble(value)) == -1.0 && PyErr_Occurred())) {
            continue;
        } else {
            PyErr_Clear(); /* an int too large for a float64: numpy says so */
            Py_DECREF(packed);
            Py_RETURN_NONE;
        }
    }
    return packed;
}

/* plain_events(raws, template, kinds, max_bytes) -> list[event | None]
 *
 * The events of a batch parsed straight into copies of `template` (an event with every field unset, whose __copy__ is
 * built in, as msgspec's is), for the plain messages: JSON objects of at most `max_bytes` whose keys are fields named
 * in `kinds` (a tuple of (field, kind) pairs, the kinds below), each once, ASCII and without escapes (so are the keys
 * of features and segment), with values of the field's kind and within its bounds: strings with any escape and valid
 * UTF-8, timestamps as RFC 3339 (T or t; a fraction rounded to microseconds; Z, z or an offset), numbers
 * that a double or an exact integer holds, each as msgspec reads it. A key no field names is dropped, as msgspec drops
 * it, if its value is a scalar and it is named once (at most 16 such keys). Each event is what msgspec decodes the
 * message to (before completion: no "timestamp_ms"); None in its place for any other message (or None), which then
 * takes msgspec's path: nothing here rejects an event.
 *
 * Short strings of the fields that take few values (kind "name", categories) are shared: a bounded table keeps the
 * first 4,096 such strings seen, so a service's model names, versions and categories are not allocated per event.
 */
enum {
    KIND_TYPE,       /* "inference" or "feedback" */
    KIND_ID,         /* an identifier, at most MAX_ID_CHARS */
    KIND_TRACE,      /* a W3C trace id: 32 hexadecimal digits */
    KIND_NAME,       /* an identifier that takes few values (shared) */
    KIND_TEXT,       /* a string of any length */
    KIND_TIMESTAMP,  /* RFC 3339 or epoch seconds (a number) */
    KIND_NONNEGATIVE,/* an integer in [0, 2**53] or a float >= 0 */
    KIND_COUNT,      /* an integer in [0, 2**53] */
    KIND_UNIT,       /* an integer or a float in [0, 1] */
    KIND_NUMBER,     /* an integer in [-2**53, 2**53] or a float */
    KIND_CLASS,      /* a string (shared) or a number */
    KIND_LABEL,      /* a string (shared), a number or a boolean */
    KIND_BOOL,
    KIND_FEATURES,   /* an object of scalars (strings shared) */
    KIND_SEGMENT,    /* an object of strings (shared) or nulls */
    KIND_MSGSPEC,    /* a key msgspec reads and this parser does not (an alias): its message goes to msgspec */
    N_KINDS
};
static const char *const KIND_NAMES[N_KINDS] = {
    "type", "id", "trace", "name", "text", "timestamp", "nonnegative", "count", "unit", "number", "class", "label", "bool",
    "features", "segment", "msgspec",
};
#define MAX_ID_CHARS 256
#define MAX_EXACT_INT ((int64_t)1 << 53)

typedef struct {
    const unsigned char *p, *end;
} Cursor;

static inline void
skip_space(Cursor *c)
{
    while (c->p < c->end && is_space(*c->p)) {
        c->p++;
    }
}

/* Whether the next byte (white space skipped) is `byte`, stepping past it if so. */
static inline int
take(Cursor *c, unsigned char byte)
{
    skip_space(c);
    if (c->p < c->end && *c->p == byte) {
        c->p++;
        return 1;
    }
    return 0;
}

static inline int
take_word(Cursor *c, const char *word, Py_ssize_t length)
{
    if (c->end - c->p >= length && memcmp(c->p, word, length) == 0) {
        c->p += length;
        return 1;
    }
    return 0;
}

enum { NOT_A_STRING, ASCII, ENCODED };

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
/* How many of the next bytes (at most 8, all if fewer remain) a string's scan may pass over at once: none is a quote,
 * a backslash, a control character or beyond ASCII (the word's bytes flagged by their high bits, the classic
 * has-zero-byte tests; the lowest flag is always a true one, the only one read). */
static inline Py_ssize_t
plain_run(const unsigned char *p, const unsigned char *end)
{
    if (end - p < 8) {
        return 0;
    }
    uint64_t word, quote, backslash;
    memcpy(&word, p, 8);
    quote = word ^ (ONES * '"');
    backslash = word ^ (ONES * '\\');
    uint64_t stops = (((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash) | ((word - ONES * 0x20) & ~word)
                      | word) & HIGHS;
    return stops == 0 ? 8 : __builtin_ctzll(stops) >> 3;
}
#else
static inline Py_ssize_t
plain_run(const unsigned char *p, const unsigned char *end)
{
    return 0; /* byte by byte */
}
#endif

/* The bytes of the string at the cursor (its opening quote), the cursor past its closing quote: ASCII without
 * escapes, or ENCODED (escapes or UTF-8 to decode); NOT_A_STRING if it is not a plain string: a control character,
 * or no closing quote. */
static int
scan_string(Cursor *c, const unsigned char **start, Py_ssize_t *length)
{
    if (c->p >= c->end || *c->p != '"') {
        return NOT_A_STRING;
    }
    const unsigned char *s = ++c->p;
    int found = ASCII;
    while (c->p < c->end) {
        Py_ssize_t run = plain_run(c->p, c->end);
        c->p += run;
        if (run == 8) {
            continue;
        }
        unsigned char byte = *c->p;
        if (byte == '"') {
            *start = s;
            *length = c->p++ - s;
            return found;
        }
        if (byte < 0x20 || (byte == '\\' && c->end - c->p < 2)) {
            return NOT_A_STRING;
        }
        if (byte == '\\' || byte >= 0x80) {
            found = ENCODED;
            c->p += byte == '\\'; /* the escaped byte, which may be a quote */
        }
        c->p++;
    }
    return NOT_A_STRING;
}

static int
hex_digits(const unsigned char *s, const unsigned char *end, uint32_t *value)
{
    if (end - s < 4) {
        return 0;
    }
    *value = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char byte = s[i];
        int digit = byte >= '0' && byte <= '9' ? byte - '0'
                  : byte >= 'a' && byte <= 'f' ? byte - 'a' + 10
                  : byte >= 'A' && byte <= 'F' ? byte - 'A' + 10 : -1;
        if (digit < 0) {
            return 0;
        }
        *value = *value * 16 + digit;
    }
    return 1;
}

/* What each of JSON's one-character escapes stands for, by the character after the backslash (0: not one of them;
 * the four hex digits of a u are read apart). */
static const unsigned char UNESCAPED[256] = {
    ['"'] = '"', ['\\'] = '\\', ['/'] = '/', ['b'] = '\b', ['f'] = '\f', ['n'] = '\n', ['r'] = '\r', ['t'] = '\t',
};

/* The string of an ENCODED string's bytes: escapes replaced, then decoded as UTF-8; NULL without an error if an
 * escape is not JSON's, a surrogate is alone or the UTF-8 is not valid (msgspec's path then says why). */
static PyObject *
decoded_text(const unsigned char *s, Py_ssize_t length)
{
    unsigned char *buffer = PyMem_Malloc(length + 1); /* an escape is never shorter than its UTF-8 */
    if (buffer == NULL) {
        return PyErr_NoMemory();
    }
    const unsigned char *end = s + length;
    Py_ssize_t n = 0;
    PyObject *text = NULL;
    while (s < end) {
        if (*s != '\\') {
            buffer[n++] = *s++;
            continue;
        }
        unsigned char escaped = s[1];
        s += 2;
        if (UNESCAPED[escaped]) {
            buffer[n++] = UNESCAPED[escaped];
            continue;
        }
        if (escaped != 'u') {
            goto end;
        }
        uint32_t code, low;
        if (!hex_digits(s, end, &code)) {
            goto end;
        }
        s += 4;
        if (code >= 0xDC00 && code <= 0xDFFF) {
            goto end;
        }
        if (code >= 0xD800 && code <= 0xDBFF) {
            if (end - s < 6 || s[0] != '\\' || s[1] != 'u' || !hex_digits(s + 2, end, &low) || low < 0xDC00 || low > 0xDFFF) {
                goto end;
            }
            s += 6;
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        }
        if (code < 0x80) {
            buffer[n++] = (unsigned char)code;
        } else if (code < 0x800) {
            buffer[n++] = 0xC0 | (code >> 6);
            buffer[n++] = 0x80 | (code & 0x3F);
        } else if (code < 0x10000) {
            buffer[n++] = 0xE0 | (code >> 12);
            buffer[n++] = 0x80 | ((code >> 6) & 0x3F);
            buffer[n++] = 0x80 | (code & 0x3F);
        } else {
            buffer[n++] = 0xF0 | (code >> 18);
            buffer[n++] = 0x80 | ((code >> 12) & 0x3F);
            buffer[n++] = 0x80 | ((code >> 6) & 0x3F);
            buffer[n++] = 0x80 | (code & 0x3F);
        }
    }
    if ((text = PyUnicode_DecodeUTF8((const char *)buffer, n, NULL)) == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
    }
end:
    PyMem_Free(buffer);
    return text;
}

static PyObject *
new_text(const unsigned char *s, Py_ssize_t length)
{
    PyObject *text = PyUnicode_New(length, 127);
    if (text != NULL) {
        memcpy(PyUnicode_1BYTE_DATA(text), s, length);
    }
    return text;
}

/* A hash of a short string's bytes, eight at a time (multiply and fold; a collision costs a probe, never a wrong
 * string: the bytes are compared). */
static inline uint32_t
short_hash(const unsigned char *s, Py_ssize_t length)
{
    uint64_t hash = 0x9E3779B97F4A7C15ull ^ (uint64_t)length, word;
    for (; length >= 8; s += 8, length -= 8) {
        memcpy(&word, s, 8);
        hash = (hash ^ word) * 0xFF51AFD7ED558CCDull;
        hash ^= hash >> 32;
    }
    word = 0;
    memcpy(&word, s, length);
    hash = (hash ^ word) * 0xC4CEB9FE1A85EC53ull;
    return (uint32_t)(hash ^ (hash >> 29));
}

#define SHARED_SLOTS 4096 /* a power of two */
#define SHARED_MAX_CHARS 64
#define SHARED_PROBES 4
static struct {
    uint32_t hash;
    PyObject *text;
} shared[SHARED_SLOTS];

/* The string of these bytes: the one kept in the table if it is there or there is room for it, else a new one. */
static PyObject *
shared_text(const unsigned char *s, Py_ssize_t length)
{
    if (length > SHARED_MAX_CHARS) {
        return new_text(s, length);
    }
    uint32_t hash = short_hash(s, length);
    for (int probe = 0; probe < SHARED_PROBES; probe++) {
        Py_ssize_t at = (hash + probe) & (SHARED_SLOTS - 1);
        PyObject *text = shared[at].text;
        if (text == NULL) {
            if ((text = new_text(s, length)) == NULL) {
                return NULL;
            }
            Py_INCREF(text);
            shared[at].hash = hash;
            shared[at].text = text;
            return text;
        }
        if (shared[at].hash == hash && PyUnicode_GET_LENGTH(text) == length
            && memcmp(PyUnicode_1BYTE_DATA(text), s, length) == 0) {
            Py_INCREF(text);
            return text;
        }
    }
    return new_text(s, length);
}

static const double POWERS_OF_TEN[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

enum { NOT_PLAIN, INTEGER, REAL };
#define MAX_NUMBER_CHARS 100

/* A number beyond the fast path, as CPython's correctly rounded strtod reads it (msgspec's reading rounds correctly
 * too); 0 if it overflows a double or is longer than MAX_NUMBER_CHARS (or with an error, on a failed allocation). */
static int
rounded_real(const unsigned char *s, const unsigned char *end, double *real)
{
    char text[MAX_NUMBER_CHARS + 1], *stop;
    Py_ssize_t length = end - s;
    if (length > MAX_NUMBER_CHARS) {
        return 0;
    }
    memcpy(text, s, length);
    text[length] = '\0';
    double value = PyOS_string_to_double(text, &stop, NULL); /* no error on overflow: +-inf */
    if ((value == -1.0 && PyErr_Occurred()) || stop != text + length || !isfinite(value)) {
        return 0;
    }
    *real = value;
    return 1;
}

/* The JSON number at the cursor: INTEGER (in [-2**53, 2**53]) or REAL, read exactly as a correctly rounded parser
 * reads it: by Clinger's fast path where it applies (a mantissa of at most 2**53 and a power of ten of at most 22 are
 * both exact, so the one division or product rounds once), else by rounded_real (a float's shortest repr often takes
 * 17 digits, beyond 2**53); NOT_PLAIN for anything else, or not a number. */
static int
scan_number(Cursor *c, int64_t *integer, double *real)
{
    const unsigned char *start = c->p, *p = c->p, *end = c->end;
    int negative = p < end && *p == '-';
    p += negative;
    if (p >= end || *p < '0' || *p > '9') {
        return NOT_PLAIN;
    }
    uint64_t mantissa = 0;
    int exponent = 0, is_real = 0, inexact = 0; /* inexact: more digits than the mantissa holds */
    if (*p == '0') {
        p++;
    } else {
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            inexact |= mantissa >= 100000000000000000ull;
            mantissa = inexact ? mantissa : mantissa * 10 + (*p - '0');
        }
    }
    if (p < end && *p == '.') {
        is_real = 1;
        if (++p >= end || *p < '0' || *p > '9') {
            return NOT_PLAIN;
        }
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            inexact |= mantissa >= 100000000000000000ull;
            mantissa = inexact ? mantissa : mantissa * 10 + (*p - '0');
            exponent--; /* what it counts once inexact does not matter */
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        is_real = 1;
        p++;
        int negative_exponent = p < end && *p == '-';
        p += p < end && (*p == '-' || *p == '+');
        if (p >= end || *p < '0' || *p > '9') {
            return NOT_PLAIN;
        }
        int written = 0;
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (written > 1000) {
                return NOT_PLAIN;
            }
            written = written * 10 + (*p - '0');
        }
        exponent += negative_exponent ? -written : written;
    }
    c->p = p;
    if (!is_real) {
        if (inexact || mantissa > (uint64_t)MAX_EXACT_INT) {
            return NOT_PLAIN;
        }
        *integer = negative ? -(int64_t)mantissa : (int64_t)mantissa;
        return INTEGER;
    }
    if (inexact || mantissa > (uint64_t)MAX_EXACT_INT || exponent < -22 || exponent > 22) {
        return rounded_real(start, p, real) ? REAL : NOT_PLAIN;
    }
    double value = exponent < 0 ? (double)mantissa / POWERS_OF_TEN[-exponent] : (double)mantissa * POWERS_OF_TEN[exponent];
    *real = negative ? -value : value;
    return REAL;
}

static inline int
two_digits(const unsigned char *s, int *value)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') {
        return 0;
    }
    *value = (s[0] - '0') * 10 + (s[1] - '0');
    return 1;
}

#define MAX_OFFSET_MINUTES (23 * 60 + 59)
static PyObject *time_zones[2 * MAX_OFFSET_MINUTES + 1]; /* made once each, as they are met */

/* The time zone of an offset in minutes, as msgspec gives it (UTC for none; borrowed). */
static PyObject *
time_zone(int offset)
{
    if (offset == 0) {
        return PyDateTime_TimeZone_UTC;
    }
    PyObject **zone = &time_zones[offset + MAX_OFFSET_MINUTES];
    if (*zone == NULL) {
        PyObject *delta = PyDelta_FromDSU(0, offset * 60, 0);
        *zone = delta == NULL ? NULL : PyTimeZone_FromOffset(delta);
        Py_XDECREF(delta);
    }
    return *zone;
}

/* An aware datetime from YYYY-MM-DD, T or t, HH:MM:SS[.fraction] and Z, z, +HH:MM or -HH:MM, as msgspec reads it (a
 * fraction rounded to microseconds); NULL without an error if not so (a space for T, which msgspec takes from 0.18.2
 * on only, included). */
static PyObject *
plain_datetime(const unsigned char *s, Py_ssize_t length)
{
    int century, year, month, day, hour, minute, second, microsecond = 0;
    if (length < 20 || !two_digits(s, &century) || !two_digits(s + 2, &year) || s[4] != '-'
        || !two_digits(s + 5, &month) || s[7] != '-' || !two_digits(s + 8, &day)
        || (s[10] != 'T' && s[10] != 't') || !two_digits(s + 11, &hour) || s[13] != ':' || !two_digits(s + 14, &minute) || s[16] != ':'
        || !two_digits(s + 17, &second)) {
        return NULL;
    }
    year += century * 100;
    Py_ssize_t at = 19;
    if (s[at] == '.') {
        int n_digits = 0, round_up = 0;
        for (at++; at < length && s[at] >= '0' && s[at] <= '9'; at++) {
            if (++n_digits <= 6) {
                microsecond = microsecond * 10 + (s[at] - '0');
            } else if (n_digits == 7) {
                round_up = s[at] >= '5'; /* as msgspec rounds: half up, by the 7th digit alone */
            }
        }
        if (n_digits == 0) {
            return NULL;
        }
        for (; n_digits < 6; n_digits++) {
            microsecond *= 10;
        }
        microsecond += round_up;
        if (microsecond > 999999) {
            return NULL; /* rounded up into the next second, which msgspec carries into the date */
        }
    }
    int offset_hours = 0, offset_minutes = 0;
    if (!(length - at == 1 && (s[at] == 'Z' || s[at] == 'z'))
        && !(length - at == 6 && (s[at] == '+' || s[at] == '-') && two_digits(s + at + 1, &offset_hours)
             && s[at + 3] == ':' && two_digits(s + at + 4, &offset_minutes) && offset_hours <= 23 && offset_minutes <= 59)) {
        return NULL;
    }
    static const int DAYS[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (year < 1 || month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59 || day < 1) {
        return NULL;
    }
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > DAYS[month - 1] + (month == 2 && leap)) {
        return NULL;
    }
    int offset = (s[at] == '-' ? -1 : 1) * (offset_hours * 60 + offset_minutes);
    PyObject *zone = time_zone(offset);
    if (zone == NULL) {
        return NULL;
    }
    return PyDateTimeAPI->DateTime_FromDateAndTime(year, month, day, hour, minute, second, microsecond, zone,
                                                   PyDateTimeAPI->DateTimeType);
}

/* The number at the cursor as a field of `kind` holds it; NULL without an error if it is out of the kind's bounds
 * or not plain. */
static PyObject *
number_of_kind(Cursor *c, int kind)
{
    int64_t integer;
    double real;
    int read = scan_number(c, &integer, &real);
    if (read == NOT_PLAIN) {
        return NULL;
    }
    int nonnegative = read == INTEGER ? integer >= 0 : real >= 0;
    switch (kind) {
    case KIND_COUNT:
        if (read != INTEGER) {
            return NULL;
        }
        /* fall through */
    case KIND_NONNEGATIVE:
        if (!nonnegative) {
            return NULL;
        }
        break;
    case KIND_UNIT:
        if (!nonnegative || (read == INTEGER ? integer > 1 : real > 1)) {
            return NULL;
        }
        break;
    case KIND_TIMESTAMP:
    case KIND_NUMBER:
    case KIND_CLASS:
    case KIND_LABEL:
        break;
    default:
        return NULL;
    }
    return read == INTEGER ? PyLong_FromLongLong(integer) : PyFloat_FromDouble(real);
}

static PyObject *
new_ref(PyObject *object)
{
    Py_INCREF(object);
    return object;
}

static PyObject *plain_object(Cursor *c, int kind);

/* Whether a string is a trace id as msgspec's pattern reads it: 32 hexadecimal digits, either case. */
static int
is_trace_id(const unsigned char *s, Py_ssize_t length)
{
    if (length != 32) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < length; i++) {
        unsigned char lower = s[i] | 0x20;
        if (!((s[i] >= '0' && s[i] <= '9') || (lower >= 'a' && lower <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

/* The value at the cursor as a field of `kind` holds it (None for null); NULL without an error if not plain. */
static PyObject *
plain_value(Cursor *c, int kind)
{
    if (c->p >= c->end) {
        return NULL;
    }
    unsigned char first = *c->p;
    if (first == '"') {
        const unsigned char *s;
        Py_ssize_t length;
        int found = scan_string(c, &s, &length);
        if (found == NOT_A_STRING) {
            return NULL;
        }
        if (kind == KIND_TYPE || kind == KIND_TIMESTAMP) {
            if (found != ASCII) {
                return NULL;
            }
            if (kind == KIND_TIMESTAMP) {
                return plain_datetime(s, length);
            }
            if ((length == 9 && memcmp(s, "inference", 9) == 0) || (length == 8 && memcmp(s, "feedback", 8) == 0)) {
                return shared_text(s, length);
            }
            return NULL;
        }
        if (kind == KIND_TRACE) {
            return found == ASCII && is_trace_id(s, length) ? new_text(s, length) : NULL;
        }
        if (kind != KIND_ID && kind != KIND_NAME && kind != KIND_TEXT && kind != KIND_CLASS && kind != KIND_LABEL) {
            return NULL;
        }
        int shared_kind = kind == KIND_NAME || kind == KIND_CLASS || kind == KIND_LABEL;
        PyObject *text = found == ENCODED ? decoded_text(s, length) : shared_kind ? shared_text(s, length) : new_text(s, length);
        if (text != NULL && (kind == KIND_ID || kind == KIND_NAME) && PyUnicode_GET_LENGTH(text) > MAX_ID_CHARS) {
            Py_CLEAR(text); /* too long */
        }
        return text;
    }
    if (first == 'n') {
        return take_word(c, "null", 4) ? new_ref(Py_None) : NULL;
    }
    if (first == 't' || first == 'f') {
        if (kind != KIND_BOOL && kind != KIND_LABEL) {
            return NULL;
        }
        return take_word(c, "true", 4) ? new_ref(Py_True) : take_word(c, "false", 5) ? new_ref(Py_False) : NULL;
    }
    if (first == '{') {
        return kind == KIND_FEATURES || kind == KIND_SEGMENT ? plain_object(c, kind) : NULL;
    }
    return number_of_kind(c, kind);
}

/* The features (scalars) or segment (strings or nulls) object at the cursor as a dict, keys and short strings
 * shared; NULL without an error if not plain, or if it names a key twice. */
static PyObject *
plain_object(Cursor *c, int kind)
{
    c->p++; /* the opening brace */
    PyObject *mapping = PyDict_New();
    if (mapping == NULL || take(c, '}')) {
        return mapping;
    }
    int value_kind = kind == KIND_FEATURES ? KIND_LABEL : KIND_CLASS; /* checked below for what each excludes */
    do {
        const unsigned char *s;
        Py_ssize_t length;
        skip_space(c);
        if (scan_string(c, &s, &length) != ASCII || !take(c, ':')) {
            goto not_plain;
        }
        skip_space(c);
        if (c->p < c->end && kind == KIND_SEGMENT && *c->p != '"' && *c->p != 'n') {
            goto not_plain; /* a segment value is a string or null */
        }
        PyObject *key = shared_text(s, length);
        PyObject *value = key == NULL ? NULL : plain_value(c, value_kind);
        Py_ssize_t size = PyDict_GET_SIZE(mapping);
        int stored = value != NULL && PyDict_SetItem(mapping, key, value) == 0;
        Py_XDECREF(key);
        Py_XDECREF(value);
        if (!stored || PyDict_GET_SIZE(mapping) == size) {
            goto not_plain; /* not plain, a key named twice, or an error */
        }
    } while (take(c, ','));
    if (take(c, '}')) {
        return mapping;
    }
not_plain:
    Py_DECREF(mapping);
    return NULL;
}

#define MAX_PLAIN_FIELDS 64
#define FIELD_INDEX_SLOTS 256 /* a power of two, several times MAX_PLAIN_FIELDS */

typedef struct {
    PyObject *name;
    const char *bytes; /* the name's */
    Py_ssize_t length;
    int kind;
    Py_ssize_t offset;
} PlainField;

/* The fields of the last (type, kinds) asked for, and their index by name's hash (-1: empty). */
static PyTypeObject *fields_of_type;
static PyObject *fields_of_kinds;
static PlainField plain_fields[MAX_PLAIN_FIELDS];
static int n_plain_fields;
static int8_t field_index[FIELD_INDEX_SLOTS];
/* The field whose key followed each field's (the last slot: the first key) in the last message that had it; -1: none. */
static int8_t next_field[MAX_PLAIN_FIELDS + 1];

static int
load_fields(PyTypeObject *type, PyObject *kinds)
{
    if (type == fields_of_type && kinds == fields_of_kinds) {
        return 0;
    }
    if (!PyTuple_Check(kinds) || PyTuple_GET_SIZE(kinds) > MAX_PLAIN_FIELDS) {
        PyErr_SetString(PyExc_TypeError, "plain_events() takes a tuple of at most 64 (field, kind) pairs");
        return -1;
    }
    Py_CLEAR(fields_of_kinds);
    Py_CLEAR(fields_of_type);
    memset(field_index, -1, sizeof(field_index));
    memset(next_field, -1, sizeof(next_field));
    n_plain_fields = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kinds); i++) {
        PyObject *pair = PyTuple_GET_ITEM(kinds, i);
        const char *name, *kind_name;
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(pair, 0))
            || !PyUnicode_IS_ASCII(PyTuple_GET_ITEM(pair, 0)) || (name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(pair, 0))) == NULL
            || (kind_name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(pair, 1))) == NULL) {
            PyErr_SetString(PyExc_TypeError, "plain_events() takes (field: ASCII str, kind: str) pairs");
            return -1;
        }
        int kind = 0;
        while (kind < N_KINDS && strcmp(KIND_NAMES[kind], kind_name) != 0) {
            kind++;
        }
        Py_ssize_t offset = kind == KIND_MSGSPEC ? -1 : slot_of(type, name);
        if (kind == N_KINDS || (offset < 0 && kind != KIND_MSGSPEC)) {
            PyErr_Format(PyExc_ValueError, "plain_events(): %s is not a kind, or %s not a field", kind_name, name);
            return -1;
        }
        PyObject *field_name = PyTuple_GET_ITEM(pair, 0);
        Py_ssize_t length = PyUnicode_GET_LENGTH(field_name);
        uint32_t hash = short_hash(PyUnicode_1BYTE_DATA(field_name), length);
        Py_ssize_t at = hash & (FIELD_INDEX_SLOTS - 1);
        while (field_index[at] >= 0) {
            at = (at + 1) & (FIELD_INDEX_SLOTS - 1);
        }
        field_index[at] = (int8_t)n_plain_fields;
        const char *bytes = (const char *)PyUnicode_1BYTE_DATA(field_name);
        if (memchr(bytes, '"', length) != NULL || memchr(bytes, '\\', length) != NULL) {
            PyErr_Format(PyExc_ValueError, "plain_events(): %s has a quote or a backslash", name);
            return -1;
        }
        plain_fields[n_plain_fields++] = (PlainField){field_name, bytes, length, kind, offset};
    }
    Py_INCREF(kinds);
    fields_of_kinds = kinds; /* holds the names */
    Py_INCREF(type);
    fields_of_type = type;
    return 0;
}

/* The field named by these bytes, or -1. */
static int
field_named(const unsigned char *s, Py_ssize_t length)
{
    Py_ssize_t at = short_hash(s, length) & (FIELD_INDEX_SLOTS - 1);
    for (int index; (index = field_index[at]) >= 0; at = (at + 1) & (FIELD_INDEX_SLOTS - 1)) {
        PyObject *name = plain_fields[index].name;
        if (PyUnicode_GET_LENGTH(name) == length && memcmp(PyUnicode_1BYTE_DATA(name), s, length) == 0) {
            return index;
        }
    }
    return -1;
}

enum { NOT_A_KEY = -2, UNKNOWN_KEY = -1 };

/* The field named by the key at the cursor (its opening quote), the cursor past its closing quote; UNKNOWN_KEY for a
 * plain key no field has (its bytes in `s`, `length`), NOT_A_KEY for a key with escapes or beyond ASCII. The field
 * whose key followed `previous` (-1: the first key) last time is tried first: a producer writes its keys in one
 * order, and then a key costs one comparison, not a scan and a look-up. */
static int
key_field(Cursor *c, int previous, const unsigned char **s, Py_ssize_t *length)
{
    int8_t *next = &next_field[previous < 0 ? MAX_PLAIN_FIELDS : previous];
    if (*next >= 0) {
        const PlainField *field = &plain_fields[*next];
        if (c->end - c->p >= field->length + 2 && c->p[0] == '"' && c->p[field->length + 1] == '"'
            && memcmp(c->p + 1, field->bytes, field->length) == 0) {
            c->p += field->length + 2;
            return *next;
        }
    }
    if (scan_string(c, s, length) != ASCII) {
        return NOT_A_KEY;
    }
    int index = field_named(*s, *length);
    if (index >= 0) {
        *next = (int8_t)index;
    }
    return index < 0 ? UNKNOWN_KEY : index;
}

/* Past the value of a key the event does not name, as msgspec passes over it: 1 for a string (its escapes and UTF-8
 * checked), a number, true, false or null; 0 for anything else (an object or array, whose keys would need checking
 * for repeats, is left to msgspec), -1 with an error. */
static int
skip_scalar(Cursor *c)
{
    if (c->p >= c->end) {
        return 0;
    }
    const unsigned char *s;
    Py_ssize_t length;
    int64_t integer;
    double real;
    switch (*c->p) {
    case '"': {
        int found = scan_string(c, &s, &length);
        if (found != ENCODED) {
            return found == ASCII;
        }
        PyObject *text = decoded_text(s, length);
        Py_XDECREF(text);
        return text != NULL ? 1 : PyErr_Occurred() ? -1 : 0;
    }
    case 't':
        return take_word(c, "true", 4);
    case 'f':
        return take_word(c, "false", 5);
    case 'n':
        return take_word(c, "null", 4);
    default:
        return scan_number(c, &integer, &real) != NOT_PLAIN ? 1 : PyErr_Occurred() ? -1 : 0;
    }
}

#define MAX_UNKNOWN_KEYS 16

/* Whether an unknown key is new to its message (recorded in `keys`, `lengths`), with room to remember it and no DEL
 * (the key of the decoder's own field starts with one). */
static int
first_unknown(const unsigned char *s, Py_ssize_t length, const unsigned char **keys, Py_ssize_t *lengths, int *n_keys)
{
    if (*n_keys == MAX_UNKNOWN_KEYS || memchr(s, 0x7F, length) != NULL) {
        return 0;
    }
    for (int i = 0; i < *n_keys; i++) {
        if (lengths[i] == length && memcmp(keys[i], s, length) == 0) {
            return 0;
        }
    }
    keys[*n_keys] = s;
    lengths[(*n_keys)++] = length;
    return 1;
}

/* The event of a plain message, a copy of the template (`copy` makes one) with its fields set; NULL without an
 * error if the message is not plain. */
static PyObject *
plain_event(const unsigned char *data, Py_ssize_t size, PyObject *copy)
{
    Cursor c = {data, data + size};
    if (!take(&c, '{')) {
        return NULL;
    }
    PyObject *event = PyObject_CallNoArgs(copy);
    if (event != NULL && Py_TYPE(event) != fields_of_type) {
        PyErr_SetString(PyExc_TypeError, "plain_events(): the template's copy is not of its type");
        Py_CLEAR(event);
    }
    if (event == NULL || take(&c, '}')) {
        goto end;
    }
    uint64_t named = 0;
    int index = -1, n_unknown = 0;
    const unsigned char *unknown[MAX_UNKNOWN_KEYS];
    Py_ssize_t unknown_lengths[MAX_UNKNOWN_KEYS];
    do {
        const unsigned char *s;
        Py_ssize_t length;
        skip_space(&c);
        int found = key_field(&c, index, &s, &length);
        if (found == UNKNOWN_KEY) { /* dropped, as msgspec drops it: a scalar, named once */
            if (!first_unknown(s, length, unknown, unknown_lengths, &n_unknown) || !take(&c, ':')) {
                goto not_plain;
            }
            skip_space(&c);
            if (skip_scalar(&c) <= 0) {
                goto not_plain;
            }
            continue;
        }
        if ((index = found) < 0 || plain_fields[index].kind == KIND_MSGSPEC || (named >> index) & 1 || !take(&c, ':')) {
            goto not_plain;
        }
        named |= (uint64_t)1 << index;
        skip_space(&c);
        PyObject *value = plain_value(&c, plain_fields[index].kind);
        if (value == NULL) {
            goto not_plain;
        }
        Py_XSETREF(FIELD(event, plain_fields[index].offset), value);
    } while (take(&c, ','));
    if (!take(&c, '}')) {
        goto not_plain;
    }
end:
    skip_space(&c);
    if (event != NULL && c.p == c.end) {
        return event;
    }
not_plain:
    Py_XDECREF(event);
    return NULL;
}

static PyObject *
plain_events(PyObject *module, PyObject *const *args, Py_ssize_t n_args)
{
    if (n_args != 4 || !PyList_Check(args[0]) || !PyLong_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "plain_events(raws: list, template, kinds: tuple, max_bytes: int)");
        return NULL;
    }
    PyObject *raws = args[0], *template = args[1];
    Py_ssize_t max_bytes = PyLong_AsSsize_t(args[3]);
    if ((max_bytes == -1 && PyErr_Occurred()) || load_fields(Py_TYPE(template), args[2]) < 0) {
        return NULL;
    }
    PyObject *copy = PyObject_GetAttrString(template, "__copy__");
    if (copy == NULL) {
        return NULL;
    }
    if (!PyCFunction_Check(copy)) { /* Python code could free the batch's bytes while they are read */
        PyErr_SetString(PyExc_TypeError, "plain_events(): the template's __copy__ is not built in (msgspec's)");
        Py_DECREF(copy);
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(raws);
    PyObject *events = PyList_New(n);
    for (Py_ssize_t i = 0; events != NULL && i < n; i++) {
        PyObject *raw = PyList_GET_ITEM(raws, i), *event = NULL;
        if (PyBytes_Check(raw) && PyBytes_GET_SIZE(raw) <= max_bytes) {
            event = plain_event((const unsigned char *)PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), copy);
        }
        if (event == NULL && PyErr_Occurred()) {
            Py_CLEAR(events);
            break;
        }
        PyList_SET_ITEM(events, i, event != NULL ? event : new_ref(Py_None));
    }
    Py_DECREF(copy);
    return events;
}

static PyMethodDef methods[] = {
    {"key_colons", (PyCFunction)key_colons, METH_O, "The colons ending a key in a batch of messages, or None."},
    {"set_fields", (PyCFunction)(void (*)(void))set_fields, METH_FASTCALL, "The fields of the events that are set."},
    {"complete", (PyCFunction)(void (*)(void))complete, METH_FASTCALL, "Complete a batch of plain inference events."},
    {"field", (PyCFunction)(void (*)(void))field, METH_FASTCALL, "Each event's field, read from its slot."},
    {"columns", (PyCFunction)(void (*)(void))columns, METH_FASTCALL, "Several fields of each event, in one pass."},
    {"floats", (PyCFunction)(void (*)(void))floats, METH_FASTCALL, "Numbers, None or unset as packed float64s."},
    {"plain_events", (PyCFunction)(void (*)(void))plain_events, METH_FASTCALL, "The plain events of a batch, parsed."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_decode", NULL, 0, methods};

PyMODINIT_FUNC
PyInit__decode(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    return PyModule_Create(&module);
}
