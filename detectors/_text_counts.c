/* The character counts behind the text descriptors (detectors/text_descriptors.py) for a batch of ASCII texts, in one
 * pass over each text's characters. Its Python twin there counts any text in numpy passes over the batch's code points
 * (about 0.5 us a 50-character text); this one runs where every text of the batch is ASCII, as most prompts are.
 *
 *   counts(texts, classes) -> bytes | None
 *
 * ``classes`` holds the class bits of the 128 ASCII characters (text_descriptors._code_point_classes: digit 1, space
 * 2, word 4, letter 8, upper 16). For each text, seven int32 counts: characters, runs of non-space characters
 * (words), runs of word characters, punctuation (neither word nor space), letters, digits, upper-case letters. None
 * when some text is not an ASCII str: the caller counts the batch in numpy instead.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { DIGIT = 1, SPACE = 2, WORD = 4, LETTER = 8, UPPER = 16, N_COUNTS = 7 };

/* The six counts after the characters' own (words, runs of word characters, punctuation, letters, digits, upper),
 * kept as lanes of one 64-bit sum: each character adds its row of `INCREMENTS`, chosen by whether the character
 * before it was a space and a word character, and the lanes are emptied before one could fill. */
enum { N_LANES = 6, LANE_BITS = 10, CHUNK = (1 << LANE_BITS) - 1 };
#define LANE(count, lane) ((uint64_t)(count) << ((lane) * LANE_BITS))

/* Whether the character before was a space (1) and a word character (2): the state each character is read in. */
static inline int
state_of(unsigned char bits)
{
    return ((bits & SPACE) != 0) | ((bits & WORD) != 0) << 1;
}

static void
add_lanes(uint64_t lanes, int32_t *counts)
{
    for (int lane = 0; lane < N_LANES; lane++) {
        counts[lane] += (int32_t)((lanes >> (lane * LANE_BITS)) & CHUNK);
    }
}

static PyObject *
counts(PyObject *module, PyObject *const *args, Py_ssize_t n_args)
{
    if (n_args != 2 || !PyList_Check(args[0]) || !PyBytes_Check(args[1]) || PyBytes_GET_SIZE(args[1]) != 128) {
        PyErr_SetString(PyExc_TypeError, "counts(texts: list[str], classes: 128 bytes)");
        return NULL;
    }
    PyObject *texts = args[0];
    const unsigned char *classes = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    Py_ssize_t n = PyList_GET_SIZE(texts);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *text = PyList_GET_ITEM(texts, i);
        if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text)) {
            Py_RETURN_NONE;
        }
    }
    uint64_t increments[4][128];
    unsigned char states[128];
    for (int c = 0; c < 128; c++) {
        unsigned char bits = classes[c];
        states[c] = (unsigned char)state_of(bits);
        for (int state = 0; state < 4; state++) {
            increments[state][c] = LANE(!(bits & SPACE) && (state & 1), 0) + LANE((bits & WORD) && !(state & 2), 1)
                                 + LANE(!(bits & (WORD | SPACE)), 2) + LANE((bits & LETTER) != 0, 3)
                                 + LANE((bits & DIGIT) != 0, 4) + LANE((bits & UPPER) != 0, 5);
        }
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, n * N_COUNTS * (Py_ssize_t)sizeof(int32_t));
    if (result == NULL) {
        return NULL;
    }
    int32_t *out = (int32_t *)PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *text = PyList_GET_ITEM(texts, i);
        const unsigned char *chars = (const unsigned char *)PyUnicode_DATA(text);
        Py_ssize_t length = PyUnicode_GET_LENGTH(text);
        int32_t row[N_COUNTS] = {(int32_t)length};
        int state = state_of(SPACE); /* texts are apart: a text's first character starts its runs */
        for (Py_ssize_t start = 0; start < length; start += CHUNK) {
            Py_ssize_t end = start + CHUNK < length ? start + CHUNK : length;
            uint64_t lanes = 0;
            for (Py_ssize_t at = start; at < end; at++) {
                unsigned char c = chars[at] & 0x7F;
                lanes += increments[state][c];
                state = states[c];
            }
            add_lanes(lanes, row + 1);
        }
        memcpy(out + i * N_COUNTS, row, sizeof(row));
    }
    return result;
}

static PyMethodDef methods[] = {
    {"counts", (PyCFunction)(void (*)(void))counts, METH_FASTCALL, "The character counts of a batch of ASCII texts."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_text_counts", NULL, 0, methods};

PyMODINIT_FUNC
PyInit__text_counts(void)
{
    return PyModule_Create(&module);
}
