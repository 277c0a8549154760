// pybind11 entry point: each kernel family registers its own functions.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace saffu {
void register_cooc(py::module_& m);
void register_solve(py::module_& m);
void register_saffu_pass(py::module_& m);
void register_output(py::module_& m);
}  // namespace saffu

PYBIND11_MODULE(_core, m) {
  m.doc() = "saffu compiled kernels (C++17). Call through saffu.kernels, which validates inputs.";
  saffu::register_cooc(m);
  saffu::register_solve(m);
  saffu::register_saffu_pass(m);
  saffu::register_output(m);
#ifdef VERSION_INFO
  m.attr("__version__") = VERSION_INFO;
#endif
}
