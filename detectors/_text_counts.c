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
    PyObject *result = PyBytes_FromStringAndSize(NULL, n * N_COUNTS * (Py_ssize_t)sizeof(int32_t));
    if (result == NULL) {
        return NULL;
    }
    int32_t *out = (int32_t *)PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *text = PyList_GET_ITEM(texts, i);
        const unsigned char *chars = (const unsigned char *)PyUnicode_DATA(text);
        Py_ssize_t length = PyUnicode_GET_LENGTH(text);
        int32_t words = 0, word_runs = 0, punctuation = 0, letters = 0, digits = 0, upper = 0;
        unsigned char previous = SPACE; /* texts are apart: a text's first character starts its runs */
        for (Py_ssize_t at = 0; at < length; at++) {
            unsigned char bits = classes[chars[at] & 0x7F];
            words += !(bits & SPACE) && (previous & SPACE);
            word_runs += (bits & WORD) && !(previous & WORD);
            punctuation += !(bits & (WORD | SPACE));
            letters += (bits & LETTER) != 0;
            digits += (bits & DIGIT) != 0;
            upper += (bits & UPPER) != 0;
            previous = bits;
        }
        int32_t row[N_COUNTS] = {(int32_t)length, words, word_runs, punctuation, letters, digits, upper};
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
