/* The batch decoder's passes in C (monitor/ingest/events.py, decode_batch): the two counts behind its repeated-key
 * check, and the completion of a batch of plain inference events. Each equals its Python twin in events.py, which
 * runs where this module was not built:
 *
 *   key_colons(raws)           == _key_colons_twin(raws), the colons ending a key, message by message
 *   set_fields(events, unset)  == _set_fields_twin(events, unset), the fields of the events not `unset`
 *   complete(events, latest_ms, unset, inference)
 *                              == _complete_batch_twin(events, latest_ms, unset, inference), the same fields set
 *   field(events, name)        == list(map(operator.attrgetter(name), events)), read from the slots
 *
 * Nothing here judges an event alone: a count that is off, or a batch that is not plainly valid, only sends the
 * batch down the message-by-message path, where every event is judged.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
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
 * Whether every event is a plain inference event: "type" unset, null or `inference`; "request_id" and "model" str;
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
        if (id == NULL || model == NULL || !PyUnicode_CheckExact(id) || !PyUnicode_CheckExact(model) || timestamp == NULL) {
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
    PyObject *events = args[0], *name = args[1];
    const char *utf8 = PyUnicode_AsUTF8(name);
    if (utf8 == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(events);
    PyObject *values = PyList_New(n);
    if (values == NULL) {
        return NULL;
    }
    PyTypeObject *last_type = NULL;
    Py_ssize_t offset = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *event = PyList_GET_ITEM(events, i), *value;
        if (Py_TYPE(event) != last_type) {
            last_type = Py_TYPE(event);
            offset = slot_of(last_type, utf8);
        }
        if (offset >= 0 && (value = FIELD(event, offset)) != NULL) {
            Py_INCREF(value);
        } else if ((value = PyObject_GetAttr(event, name)) == NULL) {
            Py_DECREF(values);
            return NULL;
        }
        PyList_SET_ITEM(values, i, value);
    }
    return values;
}

static PyMethodDef methods[] = {
    {"key_colons", (PyCFunction)key_colons, METH_O, "The colons ending a key in a batch of messages, or None."},
    {"set_fields", (PyCFunction)(void (*)(void))set_fields, METH_FASTCALL, "The fields of the events that are set."},
    {"complete", (PyCFunction)(void (*)(void))complete, METH_FASTCALL, "Complete a batch of plain inference events."},
    {"field", (PyCFunction)(void (*)(void))field, METH_FASTCALL, "Each event's field, read from its slot."},
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
