/* The two counts behind the batch decoder's repeated-key check (monitor/ingest/events.py, _no_repeated_key), as
 * single passes in C. Each equals its Python twin in events.py, which runs where this module was not built:
 *
 *   key_colons(raws)          == _key_colons_twin(raws), the colons ending a key, message by message
 *   set_fields(events, unset) == the fields of the events that are not `unset`, summed
 *
 * Nothing here judges an event: a count that is off only sends a batch down the message-by-message path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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
        for (PyTypeObject *type = Py_TYPE(event); type != NULL; type = type->tp_base) {
            if (!(type->tp_flags & Py_TPFLAGS_HEAPTYPE) || type->tp_members == NULL) {
                continue;
            }
            for (PyMemberDef *member = type->tp_members; member->name != NULL; member++) {
                if (member->type != T_OBJECT_EX || (member->flags & READONLY)) {
                    continue;
                }
                PyObject *value = *(PyObject **)((char *)event + member->offset);
                n_set += value != NULL && value != unset;
            }
        }
    }
    return PyLong_FromSsize_t(n_set);
}

static PyMethodDef methods[] = {
    {"key_colons", (PyCFunction)key_colons, METH_O, "The colons ending a key in a batch of messages, or None."},
    {"set_fields", (PyCFunction)(void (*)(void))set_fields, METH_FASTCALL, "The fields of the events that are set."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_keycount", NULL, 0, methods};

PyMODINIT_FUNC
PyInit__keycount(void)
{
    return PyModule_Create(&module);
}
