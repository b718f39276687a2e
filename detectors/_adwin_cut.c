/* ADWIN's cut test in C (detectors/adwin.py, ADWIN._cut_found): the loop over the window's buckets, the same
 * floating-point operations in the same order as its Python twin, ADWIN._cut_found_twin, which runs where this module
 * was not built (river's expressions: the detections are river's).
 *
 *   cut_found(totals, width, total, variance, delta, least) -> bool
 *
 * `totals` holds the rows of bucket sums, row i of buckets of 2**i values, oldest first; the older part W0 grows by
 * one bucket at a time, from the oldest (last row) on. Whether some split into W0 and the newer W1, each at least
 * `least` values long, has means further apart than the bound.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

static PyObject *
cut_found(PyObject *module, PyObject *const *args, Py_ssize_t n_args)
{
    if (n_args != 6 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "cut_found(totals: list, width: int, total, variance, delta, least: int)");
        return NULL;
    }
    PyObject *totals = args[0];
    int64_t width = PyLong_AsLongLong(args[1]), least = PyLong_AsLongLong(args[5]);
    double total = PyFloat_AsDouble(args[2]), variance = PyFloat_AsDouble(args[3]), delta = PyFloat_AsDouble(args[4]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    int64_t n0 = 0, n1 = width;
    double u0 = 0.0, u1 = total;
    double delta_prime = log(2.0 * log((double)width) / delta);
    double mean_variance = variance / (double)width;
    double two_thirds_delta_prime = 2.0 / 3.0 * delta_prime;
    for (Py_ssize_t row = PyList_GET_SIZE(totals) - 1; row >= 0; row--) {
        PyObject *buckets = PyList_GET_ITEM(totals, row);
        if (!PyList_Check(buckets) || row > 62) {
            PyErr_SetString(PyExc_TypeError, "cut_found() takes a list of at most 63 lists of bucket sums");
            return NULL;
        }
        int64_t size = (int64_t)1 << row;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(buckets); i++) {
            double bucket_total = PyFloat_AsDouble(PyList_GET_ITEM(buckets, i));
            if (bucket_total == -1.0 && PyErr_Occurred()) {
                return NULL;
            }
            n0 += size;
            n1 -= size;
            u0 += bucket_total;
            u1 -= bucket_total;
            if (n1 == 0) {
                Py_RETURN_FALSE; /* the newest bucket: W1 would be empty */
            }
            if (n0 < least || n1 < least) {
                continue;
            }
            double m_recip = 1.0 / ((double)(n0 - least) + 1.0) + 1.0 / ((double)(n1 - least) + 1.0);
            double spread = 2.0 * m_recip * mean_variance * delta_prime;
            if (spread >= 0.0 && fabs(u0 / (double)n0 - u1 / (double)n1) > sqrt(spread) + two_thirds_delta_prime * m_recip) {
                Py_RETURN_TRUE;
            }
        }
    }
    Py_RETURN_FALSE;
}

static PyMethodDef methods[] = {
    {"cut_found", (PyCFunction)(void (*)(void))cut_found, METH_FASTCALL, "Whether ADWIN's window has a cut."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_adwin_cut", NULL, 0, methods};

PyMODINIT_FUNC
PyInit__adwin_cut(void)
{
    return PyModule_Create(&module);
}
