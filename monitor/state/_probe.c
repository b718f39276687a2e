/* The label store's index (monitor/state/labels.py) in C: its keys' hashes, and linear probing key by key. Its
 * Python twins there hash in numpy, and probe all keys at once in rounds of numpy passes: as many rounds as the
 * longest probe, each a few passes over the keys still probing (a millisecond a batch where the table is three
 * quarters full). The table must have an empty slot: the store rebuilds it well before.
 *
 *   hashes(keys, seed, prime, mix_1, mix_2) -> bytes | None
 *     key_hashes of each key (None or "" give 0): its ASCII bytes, zero-padded to 64, read as 8 native uint64
 *     words, h = seed, then h ^= word and h *= prime for each, then a splitmix64 finish with the two multipliers;
 *     1 for a hash that came out 0. None when a key is not an ASCII str of at most 64 characters.
 *
 *   insert(table, hashes, positions)
 *     For each key, in order: its position is written at the first slot from its home, hashes[i] % len(table),
 *     that is empty (-1) or already holds that position (a stale slot of the call the position held before, on the
 *     key's probe path, so found there all the same).
 *
 *   find(table, hashes, keys_0, keys_1, n_held, newest, capacity, rows)
 *     For each key but 0, every position on its probe path up to an empty slot that is held (below n_held) and
 *     whose call has the key (keys_0 or keys_1 at that position equal to it): the newest of their rows, counted
 *     from the first call ever (newest - (newest - position) % capacity), is written to rows[i] if larger.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static int
get_array(PyObject *object, Py_buffer *view, Py_ssize_t itemsize, int writable, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(object, view, flags) < 0) {
        return -1;
    }
    if (view->itemsize != itemsize || view->ndim != 1) {
        PyErr_Format(PyExc_TypeError, "%s: a one-dimensional array of %zd-byte items", name, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *
hashes(PyObject *module, PyObject *const *args, Py_ssize_t n_args)
{
    if (n_args != 5 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "hashes(keys: list, seed, prime, mix_1, mix_2)");
        return NULL;
    }
    uint64_t constants[4];
    for (int i = 0; i < 4; i++) {
        constants[i] = PyLong_AsUnsignedLongLong(args[1 + i]);
        if (PyErr_Occurred()) {
            return NULL;
        }
    }
    PyObject *keys = args[0];
    Py_ssize_t n = PyList_GET_SIZE(keys);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        if (key != Py_None && !(PyUnicode_CheckExact(key) && PyUnicode_IS_ASCII(key) && PyUnicode_GET_LENGTH(key) <= 64)) {
            Py_RETURN_NONE;
        }
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(uint64_t));
    if (result == NULL) {
        return NULL;
    }
    uint64_t *out = (uint64_t *)PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        Py_ssize_t length = key == Py_None ? 0 : PyUnicode_GET_LENGTH(key);
        if (length == 0) {
            out[i] = 0;
            continue;
        }
        unsigned char padded[64] = {0};
        memcpy(padded, PyUnicode_DATA(key), (size_t)length);
        uint64_t h = constants[0];
        for (int word = 0; word < 8; word++) {
            uint64_t value;
            memcpy(&value, padded + 8 * word, sizeof(value));
            h ^= value;
            h *= constants[1];
        }
        h ^= h >> 30;
        h *= constants[2];
        h ^= h >> 27;
        h *= constants[3];
        h ^= h >> 31;
        out[i] = h == 0 ? 1 : h;
    }
    return result;
}

static PyObject *
insert(PyObject *module, PyObject *const *args, Py_ssize_t n_args)
{
    if (n_args != 3) {
        PyErr_SetString(PyExc_TypeError, "insert(table, hashes, positions)");
        return NULL;
    }
    Py_buffer table, hashes, positions;
    if (get_array(args[0], &table, sizeof(int32_t), 1, "table") < 0) {
        return NULL;
    }
    if (get_array(args[1], &hashes, sizeof(uint64_t), 0, "hashes") < 0) {
        PyBuffer_Release(&table);
        return NULL;
    }
    if (get_array(args[2], &positions, sizeof(int32_t), 0, "positions") < 0) {
        PyBuffer_Release(&table);
        PyBuffer_Release(&hashes);
        return NULL;
    }
    PyObject *result = Py_None;
    Py_ssize_t size = table.shape[0], n = hashes.shape[0];
    if (positions.shape[0] != n) {
        PyErr_SetString(PyExc_ValueError, "insert: as many positions as hashes");
        result = NULL;
    }
    int32_t *slots = (int32_t *)table.buf;
    const uint64_t *keys = (const uint64_t *)hashes.buf;
    const int32_t *at = (const int32_t *)positions.buf;
    for (Py_ssize_t i = 0; result != NULL && i < n && size > 0; i++) {
        Py_ssize_t slot = (Py_ssize_t)(keys[i] % (uint64_t)size), probes = 0;
        while (slots[slot] != -1 && slots[slot] != at[i]) {
            slot = slot + 1 == size ? 0 : slot + 1;
            if (++probes == size) {
                PyErr_SetString(PyExc_RuntimeError, "insert: the table is full");
                result = NULL;
                break;
            }
        }
        if (result != NULL) {
            slots[slot] = at[i];
        }
    }
    PyBuffer_Release(&table);
    PyBuffer_Release(&hashes);
    PyBuffer_Release(&positions);
    Py_XINCREF(result);
    return result;
}

static PyObject *
find(PyObject *module, PyObject *const *args, Py_ssize_t n_args)
{
    if (n_args != 8) {
        PyErr_SetString(PyExc_TypeError, "find(table, hashes, keys_0, keys_1, n_held, newest, capacity, rows)");
        return NULL;
    }
    long long n_held = PyLong_AsLongLong(args[4]), newest = PyLong_AsLongLong(args[5]);
    long long capacity = PyLong_AsLongLong(args[6]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (capacity < 1) {
        PyErr_SetString(PyExc_ValueError, "find: a capacity of at least 1");
        return NULL;
    }
    Py_buffer views[5];
    static const char *names[5] = {"table", "hashes", "keys_0", "keys_1", "rows"};
    static const Py_ssize_t itemsizes[5] = {sizeof(int32_t), 8, 8, 8, 8};
    PyObject *arrays[5] = {args[0], args[1], args[2], args[3], args[7]};
    int n_views = 0;
    for (; n_views < 5; n_views++) {
        if (get_array(arrays[n_views], &views[n_views], itemsizes[n_views], n_views == 4, names[n_views]) < 0) {
            break;
        }
    }
    PyObject *result = n_views == 5 ? Py_None : NULL;
    if (result != NULL && (views[4].shape[0] != views[1].shape[0] || views[3].shape[0] != views[2].shape[0]
                           || n_held > views[2].shape[0])) {
        PyErr_SetString(PyExc_ValueError, "find: a row for each hash, and the held keys in both key columns");
        result = NULL;
    }
    if (result != NULL) {
        const int32_t *slots = (const int32_t *)views[0].buf;
        const uint64_t *keys = (const uint64_t *)views[1].buf;
        const uint64_t *first = (const uint64_t *)views[2].buf, *second = (const uint64_t *)views[3].buf;
        int64_t *rows = (int64_t *)views[4].buf;
        Py_ssize_t size = views[0].shape[0];
        for (Py_ssize_t i = 0; result != NULL && i < views[1].shape[0] && size > 0; i++) {
            uint64_t key = keys[i];
            if (key == 0) {
                continue;
            }
            Py_ssize_t slot = (Py_ssize_t)(key % (uint64_t)size), probes = 0;
            for (int32_t position; (position = slots[slot]) != -1;) {
                if (position >= 0 && position < n_held && (first[position] == key || second[position] == key)) {
                    long long back = (newest - position) % capacity;
                    long long row = newest - (back < 0 ? back + capacity : back);
                    if (row > rows[i]) {
                        rows[i] = row;
                    }
                }
                slot = slot + 1 == size ? 0 : slot + 1;
                if (++probes == size) {
                    PyErr_SetString(PyExc_RuntimeError, "find: the table is full");
                    result = NULL;
                    break;
                }
            }
        }
    }
    for (int i = 0; i < n_views; i++) {
        PyBuffer_Release(&views[i]);
    }
    Py_XINCREF(result);
    return result;
}

static PyMethodDef methods[] = {
    {"hashes", (PyCFunction)(void (*)(void))hashes, METH_FASTCALL, "The 64-bit hash of each join key."},
    {"insert", (PyCFunction)(void (*)(void))insert, METH_FASTCALL, "Place each key's position by linear probing."},
    {"find", (PyCFunction)(void (*)(void))find, METH_FASTCALL, "The newest row of each key's call, if larger."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_probe", NULL, 0, methods};

PyMODINIT_FUNC
PyInit__probe(void)
{
    return PyModule_Create(&module);
}
